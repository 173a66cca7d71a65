"""Distillation on a transfer set, function matching and the controls (SPEC §12): each control differs from the KD
student in exactly one thing, and the transfer set's labels are never read."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdscope import zoo
from kdscope.compress import DistillConfig, distill
from kdscope.compress.controls import matched_schedule, random_teacher, with_transfer
from kdscope.compress.kd_losses import distillation_loss
from kdscope.core.subject import Subject
from kdscope.data import probeworld
from kdscope.data.augment import Augment
from kdscope.data.imageset import UNLABELLED
from kdscope.train import TrainConfig, train

FAST = TrainConfig(epochs=1, batch_size=32, augment=Augment(crop_padding=1, flip=True))


@pytest.fixture(scope="module")
def world():
    labelled = probeworld(200, size=16, seed=2, labelled_fraction=0.2, cache_dir=False)
    transfer = probeworld(80, size=16, seed=2, split="transfer", cache_dir=False)
    return labelled, transfer


@pytest.fixture(scope="module")
def teacher():
    return Subject(zoo.build("resnet", 10, seed=0, width=4, blocks=1), name="teacher", role="teacher",
                   mean=[0.3] * 3, std=[0.2] * 3)


def _student():
    return zoo.build("student", 10, seed=1, width=2)


def _weights(subject):
    return [p.detach().clone() for p in subject.model.parameters()]


def test_transfer_labels_are_never_read(teacher, world):
    labelled, transfer = world
    scrambled = transfer.subset(np.arange(len(transfer)))
    scrambled.labels = (scrambled.labels + 3) % 10
    first = distill(teacher, labelled, student=_student(), train=FAST, transfer=transfer, controls=(), progress=False)
    second = distill(teacher, labelled, student=_student(), train=FAST, transfer=scrambled, controls=(),
                     progress=False)
    assert all(torch.equal(a, b) for a, b in zip(_weights(first.subject), _weights(second.subject)))
    taught = with_transfer(labelled, transfer)
    targets = taught.targets().numpy()
    assert (targets[len(labelled):] == UNLABELLED).all() and (targets[:len(labelled)] == labelled.labels).all()


def test_label_term_weighs_each_image_once():
    logits = torch.randn(6, 10)
    labels = torch.tensor([1, 2, UNLABELLED, UNLABELLED, UNLABELLED, UNLABELLED])
    hard_only = distillation_loss(logits, torch.zeros(6, 10), labels, kind="logits", alpha=1.0)
    assert hard_only == pytest.approx(float(F.cross_entropy(logits[:2], labels[:2], reduction="sum") / 6))
    teacher = torch.randn(6, 10)
    pseudo = distillation_loss(logits, teacher, labels, kind="pseudo_label", alpha=0.0)
    assert pseudo == pytest.approx(float(F.cross_entropy(logits, teacher.argmax(1))))


def test_controls_differ_from_the_kd_student_in_one_thing_each(teacher, world, tmp_path):
    labelled, transfer = world
    other = Subject(zoo.build("resnet", 10, seed=5, width=4, blocks=1), name="teacher_star", mean=[0.3] * 3,
                    std=[0.2] * 3)
    result = distill(teacher, labelled, student=_student(), train=FAST, transfer=transfer, other_teacher=other,
                     controls=("independent", "pseudo_label", "random_teacher", "other_teacher"), out=tmp_path,
                     progress=False)
    lineage = {c.subject.role: c.lineage for c in result.controls}
    assert [c.subject.role for c in result.controls] == ["independent_student", "pseudo_label_student",
                                                         "random_teacher_student", "other_teacher_student"]
    assert result.control is result.controls[0]
    kd = result.lineage.hyperparameters
    assert lineage["pseudo_label_student"].hyperparameters["distill"] == {**kd["distill"], "kind": "pseudo_label"}
    for role in ("random_teacher_student", "other_teacher_student"):
        assert lineage[role].hyperparameters == kd and lineage[role].control_of == "kd_student"
    assert lineage["random_teacher_student"].parent == "teacher_random"
    assert lineage["other_teacher_student"].parent == "teacher_star"
    independent = lineage["independent_student"].hyperparameters["train"]
    steps = FAST.epochs * math.ceil((len(labelled) + len(transfer)) / FAST.batch_size)
    assert independent["epochs"] * math.ceil(len(labelled) / FAST.batch_size) >= steps
    assert {k: v for k, v in independent.items() if k not in ("epochs", "warmup_epochs")} == {
        k: v for k, v in kd["train"].items() if k not in ("epochs", "warmup_epochs")}
    assert lineage["independent_student"].data == labelled.description
    assert result.lineage.data == {"labelled": labelled.description, "transfer": transfer.description}
    for name in ("kd_student", "kd_student_independent", "kd_student_pseudo_label", "kd_student_random_teacher",
                 "kd_student_other_teacher"):
        assert (tmp_path / f"{name}.pt").exists()


def test_every_student_starts_from_the_same_weights_and_batches(teacher, world):
    """With alpha=1 and no transfer set the teacher's term vanishes: KD, pseudo-label and random-teacher
    students must then be the very same model, which holds only if initial weights, batches and augmentation
    are shared."""
    labelled, _ = world
    result = distill(teacher, labelled, DistillConfig(alpha=1.0), student=_student(), train=FAST,
                     controls=("independent", "pseudo_label", "random_teacher"), progress=False)
    reference = _weights(result.subject)
    for control in result.controls:
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(reference, _weights(control.subject))), \
            control.subject.name


def test_random_teacher_is_untrained_seeded_and_leaves_the_teacher_alone(teacher):
    before = _weights(teacher)
    first, second = random_teacher(teacher, 3), random_teacher(teacher, 3)
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(teacher)))
    assert all(torch.equal(a, b) for a, b in zip(_weights(first), _weights(second)))
    assert not all(torch.equal(a, b) for a, b in zip(before, _weights(first)))
    assert not all(torch.equal(a, b) for a, b in zip(_weights(first), _weights(random_teacher(teacher, 1))))


def test_random_teacher_refuses_parameters_no_layer_can_reset():
    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))
            self.inner = zoo.build("student", 10, seed=0, width=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) * self.scale

    with pytest.raises(ValueError, match="reset_parameters"):
        random_teacher(Subject(Scaled(), name="scaled"), 0)


def test_function_matching_shows_the_teacher_the_students_mixed_view(teacher, world):
    labelled, transfer = world
    seen = {"teacher": [], "student": []}
    student = _student()
    hooks = [teacher.model.register_forward_pre_hook(lambda _m, a: seen["teacher"].append(a[0].clone())),
             student.register_forward_pre_hook(lambda _m, a: seen["student"].append(a[0].clone()))]
    mixed = TrainConfig(epochs=1, batch_size=32, augment=Augment(flip=True, mixup=1.0))
    try:
        distill(teacher, labelled, DistillConfig(alpha=0.0), student=student, train=mixed, transfer=transfer,
                controls=(), progress=False)
    finally:
        for hook in hooks:
            hook.remove()
    batches = math.ceil((len(labelled) + len(transfer)) / 32)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in labelled.channel_stats())
    student_views = [v * std + mean for v in seen["student"] if len(v) > 2][:batches]  # raw pixels again
    teacher_views = [v * 0.2 + 0.3 for v in seen["teacher"] if len(v) > 2][:batches]
    assert len(teacher_views) == len(student_views) == batches
    assert all(torch.allclose(s, t, atol=1e-5) for s, t in zip(student_views, teacher_views))
    whole = [v for v in student_views if len(v) == 32]
    assert not any(np.isin(np.round(w.numpy() * 255, 3), np.arange(256)).all() for w in whole)  # really mixed


def test_mixup_needs_a_teacher_only_loss(teacher, world):
    labelled, _ = world
    mixed = TrainConfig(epochs=1, batch_size=32, augment=Augment(mixup=1.0))
    with pytest.raises(ValueError, match="alpha=0"):
        distill(teacher, labelled, DistillConfig(alpha=0.5), student=_student(), train=mixed, progress=False)
    with pytest.raises(ValueError, match="mixup"):
        train(_student(), labelled, mixed, progress=False)
    assert matched_schedule(mixed, 10, 10).augment.mixup == 0.0


@pytest.mark.parametrize("controls, other, match", [(("bogus",), None, "controls"),
                                                    (("independent", "independent"), None, "distinct"),
                                                    (("other_teacher",), None, "other_teacher=")])
def test_bad_controls_are_refused_before_training(teacher, world, controls, other, match):
    with pytest.raises(ValueError, match=match):
        distill(teacher, world[0], student=_student(), train=FAST, controls=controls, other_teacher=other,
                progress=False)
