import math

import pytest
import torch
from torch import nn

from kdscope import zoo
from kdscope.core.checkpoint import checkpoint_paths, read_metadata
from kdscope.data import digits
from kdscope.data.augment import Augment
from kdscope.store.loading import load_subject
from kdscope.train import TrainConfig, _warmup_cosine, train
from tests.conftest import parameters_snapshot

FAST = TrainConfig(epochs=2, batch_size=64, lr=0.05)


def test_training_learns_real_digits():
    data, test = digits(split="train", size=16), digits(split="test", size=16)
    model = zoo.build("student", 10, seed=0, width=4)
    result = train(model, data, TrainConfig(epochs=3, batch_size=64, lr=0.1), eval_data=test, progress=False)
    assert result.metrics["accuracy"] > 0.6
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert not model.training
    assert all(p.is_contiguous() for p in model.parameters()), "trained in channels_last, returned in default layout"


def test_same_seed_same_weights(tiny_world):
    train_data, _ = tiny_world
    runs = []
    for _ in range(2):
        model = zoo.build("resnet", 10, seed=0, width=4, blocks=1)
        config = TrainConfig(epochs=1, batch_size=64, augment=Augment.colour_jitter())
        train(model, train_data, config, progress=False)
        runs.append(parameters_snapshot(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_checkpoint_records_everything_needed(tmp_path, tiny_world):
    train_data, test_data = tiny_world
    model = zoo.build("resnet", 10, seed=0, width=4, blocks=1)
    result = train(model, train_data, FAST, eval_data=test_data, checkpoint=tmp_path / "m.pt", progress=False,
                   name="m", role="teacher")
    meta = read_metadata(tmp_path / "m.pt")
    assert meta["data"]["dataset"] == "probeworld" and meta["data"]["n"] == 300
    assert meta["train_config"]["epochs"] == 2 and meta["seed"] == 0 and meta["role"] == "teacher"
    assert meta["metrics"]["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert len(meta["normalization"]["mean"]) == 3
    assert not checkpoint_paths(tmp_path / "m.pt")[2].exists()
    loaded = load_subject(tmp_path / "m.pt")
    assert loaded.evaluate(test_data)["accuracy"] == pytest.approx(result.metrics["accuracy"])


class _Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, tiny_world):
    train_data, _ = tiny_world
    config = TrainConfig(epochs=3, batch_size=64)
    reference = zoo.build("resnet", 10, seed=0, width=4, blocks=1)
    train(reference, train_data, config, progress=False)

    steps = {"n": 0}

    def crashing_loss(logits, labels, _images):
        steps["n"] += 1
        if steps["n"] == 12:
            raise _Interrupt
        return nn.functional.cross_entropy(logits, labels)

    model = zoo.build("resnet", 10, seed=0, width=4, blocks=1)
    with pytest.raises(_Interrupt):
        train(model, train_data, config, loss=crashing_loss, checkpoint=tmp_path / "m.pt", progress=False)
    assert read_metadata(tmp_path / "m.pt")["history"][-1]["epoch"] == 2
    resumed = zoo.build("resnet", 10, seed=5, width=4, blocks=1)
    result = train(resumed, train_data, config, checkpoint=tmp_path / "m.pt", resume=True, progress=False)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    expected = reference.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in resumed.state_dict().items())


def test_loss_hook_gets_raw_images_and_trains_its_own_parameters(tiny_world):
    train_data, _ = tiny_world

    class Hook(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))
            self.seen_range = (1.0, 0.0)

        def forward(self, logits, labels, images):
            low, high = self.seen_range
            self.seen_range = (min(low, float(images.min())), max(high, float(images.max())))
            return nn.functional.cross_entropy(logits * self.scale, labels)

    hook = Hook()
    train(zoo.build("student", 10, seed=0, width=2), train_data, FAST, loss=hook, progress=False)
    assert hook.scale.item() != 1.0
    assert 0.0 <= hook.seen_range[0] and hook.seen_range[1] <= 1.0


@pytest.mark.parametrize("options", [{"optimizer": "adamw", "lr": 1e-3}, {"label_smoothing": 0.1, "grad_clip": 1.0}])
def test_options_train(tiny_world, options):
    train_data, _ = tiny_world
    model = zoo.build("vgg", 10, seed=0, width=4)
    before = parameters_snapshot(model)
    result = train(model, train_data, TrainConfig(epochs=1, batch_size=64, **options), progress=False)
    assert math.isfinite(result.history[0]["train_loss"])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_warmup_then_cosine_schedule():
    factor = _warmup_cosine(10, 110)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.5) and factor(110) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"optimizer": "rmsprop"}, {"lr": -1.0}, {"label_smoothing": 1.0},
                                 {"grad_clip": 0.0}])
def test_bad_config_is_refused(tiny_world, bad):
    with pytest.raises(ValueError):
        train(zoo.build("student", 10, width=2), tiny_world[0], TrainConfig(**bad), progress=False)


def test_resume_without_a_checkpoint_says_so(tiny_world, tmp_path):
    with pytest.raises(ValueError, match="checkpoint"):
        train(zoo.build("student", 10, width=2), tiny_world[0], FAST, resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(zoo.build("student", 10, width=2), tiny_world[0], FAST, resume=True, checkpoint=tmp_path / "x.pt",
              progress=False)
