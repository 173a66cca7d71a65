import json

import pytest
import torch
from torch import nn

from kdscope import zoo
from kdscope.compress import DistillConfig, distill
from kdscope.core.checkpoint import read_metadata
from kdscope.core.subject import Subject
from kdscope.store.loading import load_subject
from kdscope.train import TrainConfig
from tests.conftest import assert_unchanged, parameters_snapshot

FAST = TrainConfig(epochs=2, batch_size=64)


class CountingModel(nn.Module):
    """Counts forward passes of a wrapped network."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


@pytest.fixture
def teacher() -> Subject:
    return Subject(zoo.build("resnet", 10, seed=0, width=4, blocks=1), name="teacher", role="teacher",
                   mean=[0.3] * 3, std=[0.2] * 3)


def _student() -> nn.Module:
    return zoo.build("student", 10, seed=1, width=2)


def test_with_alpha_one_kd_student_equals_the_independent_student(teacher, tiny_world):
    """alpha=1 leaves only the label loss, so both runs must be bit-identical: same init, batches, schedule, seed."""
    train_data, _ = tiny_world
    result = distill(teacher, train_data, DistillConfig(alpha=1.0), student=_student(), train=FAST, progress=False)
    kd, control = result.subject.model.state_dict(), result.control.subject.model.state_dict()
    assert all(torch.equal(kd[k], control[k]) for k in kd)
    soft = distill(teacher, train_data, DistillConfig(alpha=0.5), student=_student(), train=FAST, controls=(),
                   progress=False)
    assert soft.control is None
    assert any(not torch.equal(soft.subject.model.state_dict()[k], control[k]) for k in kd)


def test_teacher_runs_once_per_batch_and_nothing_given_is_changed(tiny_world):
    train_data, _ = tiny_world
    counting = CountingModel(zoo.build("resnet", 10, seed=0, width=4, blocks=1))
    counting.train()
    teacher = Subject(counting, name="teacher")
    teacher_before = parameters_snapshot(counting)
    student = _student()
    student_before = parameters_snapshot(student)
    distill(teacher, train_data, student=student, train=FAST, controls=(), progress=False)
    batches = FAST.epochs * -(-len(train_data) // FAST.batch_size)
    assert counting.calls == batches + 1  # + one compatibility probe
    assert_unchanged(counting, teacher_before)
    assert_unchanged(student, student_before)
    assert counting.training and all(m.training for m in counting.modules())
    assert not any(m._forward_hooks for m in list(counting.modules()) + list(student.modules()))


def test_fitnets_hints_train_regressors_across_shapes(teacher, tiny_world):
    train_data, _ = tiny_world
    hints = (("features.3", "layer2"), ("fc", "fc"))
    config = DistillConfig(hints=hints, hint_weight=2.0)
    result = distill(teacher, train_data, config, student=_student(), train=FAST, controls=(), progress=False)
    assert result.lineage.hyperparameters["distill"]["hints"] == [list(h) for h in hints]
    assert not any(m._forward_hooks for m in result.subject.model.modules())


def test_hint_errors_name_the_layers(teacher, tiny_world):
    train_data, _ = tiny_world
    with pytest.raises(KeyError, match="layer_9"):
        distill(teacher, train_data, DistillConfig(hints=(("features.3", "layer_9"),)), student=_student(),
                train=FAST, progress=False)
    with pytest.raises(ValueError, match="'fc' -> 'layer1'"):
        distill(teacher, train_data, DistillConfig(hints=(("fc", "layer1"),)), student=_student(), train=FAST,
                progress=False)


def test_temperature_schedule_goes_from_high_to_low():
    config = DistillConfig(temperature=8.0, temperature_end=2.0)
    assert config.temperature_at(0.0) == 8.0 and config.temperature_at(0.5) == 5.0
    assert config.temperature_at(1.0) == 2.0 and DistillConfig().temperature_at(0.7) == 4.0


@pytest.mark.parametrize("bad", [{"temperature": 0.0}, {"temperature": -1.0}, {"temperature_end": 0.0},
                                 {"alpha": 1.5}, {"kind": "js"}, {"hint_weight": -1.0}])
def test_bad_hyperparameters_are_refused(teacher, tiny_world, bad):
    with pytest.raises(ValueError):
        distill(teacher, tiny_world[0], DistillConfig(**bad), student=_student(), train=FAST, progress=False)


def test_class_count_mismatch_is_refused(teacher, tiny_world):
    with pytest.raises(ValueError, match="num_classes=10"):
        distill(teacher, tiny_world[0], student=zoo.build("student", 7, width=2), train=FAST, progress=False)


def test_checkpoints_carry_lineage_and_reload(teacher, tiny_world, tmp_path):
    train_data, test_data = tiny_world
    result = distill(teacher, train_data, DistillConfig(kind="reverse_kl"), student=_student(), train=FAST,
                     eval_data=test_data, out=tmp_path, name="kd", progress=False)
    lineage = read_metadata(tmp_path / "kd.pt")["lineage"]
    assert lineage["parent"] == "teacher" and lineage["method"] == "distill:reverse_kl"
    assert lineage["metrics"]["accuracy"] == pytest.approx(result.lineage.metrics["accuracy"])
    assert lineage["metrics"]["parameters"] == sum(p.numel() for p in _student().parameters())
    control = read_metadata(tmp_path / "kd_independent.pt")["lineage"]
    assert control["control_of"] == "kd" and control["seed"] == lineage["seed"]
    assert result.checkpoint == tmp_path / "kd.pt" and result.control.checkpoint == tmp_path / "kd_independent.pt"
    assert result.subject.metadata["lineage"] == lineage == result.lineage.to_dict()
    assert result.control.subject.metadata["lineage"] == control
    reloaded = load_subject(tmp_path / "kd.pt")
    assert reloaded.metadata["lineage"]["name"] == "kd"
    assert reloaded.evaluate(test_data)["accuracy"] == pytest.approx(result.lineage.metrics["accuracy"])


def test_an_audit_of_the_student_in_memory_records_its_lineage(teacher, tiny_world):
    """The lineage rides on the Subject itself: auditing `distill(...).subject` without saving it still says how
    the student was made, not just that it was trained."""
    from kdscope.audit import Plan, audit

    train_data, test_data = tiny_world
    small = train_data.subset(range(64))
    result = distill(teacher, small, student=_student(), train=TrainConfig(epochs=1, batch_size=64),
                     eval_data=test_data.subset(range(16)), progress=False)
    results = audit([teacher, result.subject, result.control.subject], test_data,
                    Plan(images=8, stages=("predictions",)), progress=False)
    records = {m["name"]: m for m in json.loads(results.to_json())["models"]}
    assert records["kd_student"]["method"] == "distill:kl" and records["kd_student"]["parent"] == "teacher"
    assert records["kd_student_independent"]["method"] == "independent"
