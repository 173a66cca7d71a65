"""Shared fixtures: a private ProbeWorld cache per test session, and tiny data and models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdscope import zoo
from kdscope.data import probeworld


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the user's ~/.cache out of the tests."""
    patch = pytest.MonkeyPatch()
    patch.setenv("KDSCOPE_CACHE", str(tmp_path_factory.mktemp("kdscope-cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def tiny_world():
    """(train, test) ProbeWorld sets at 16x16, small enough for seconds-long training."""
    return probeworld(300, split="train", size=16), probeworld(100, split="test", size=16)


@pytest.fixture
def tiny_resnet() -> nn.Module:
    return zoo.build("resnet", 10, seed=0, width=4, blocks=1)


@pytest.fixture(scope="module")
def trained_tiny_teacher(tiny_world):
    """A tiny ResNet trained for two epochs (enough for gradients and attacks to mean something), as a Subject."""
    from kdscope import Subject
    from kdscope.train import TrainConfig, train

    train_set, _ = tiny_world
    model = zoo.build("resnet", 10, seed=0, width=4, blocks=1)
    train(model, train_set, TrainConfig(epochs=2, lr=0.02), progress=False)
    mean, std = train_set.channel_stats()
    return Subject(model, name="teacher", mean=mean, std=std)


def parameters_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Bit-exact copies of every parameter and buffer."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert state.keys() == snapshot.keys()
    for key, value in snapshot.items():
        assert torch.equal(state[key], value), f"{key} changed"


def tiny_demo_recipe():
    """The demo's whole loop at toy size: every step and every audit stage runs, in seconds."""
    from kdscope.audit import Plan
    from kdscope.compress.quantize import QuantizeConfig
    from kdscope.data.augment import Augment
    from kdscope.demo import DemoModel, DemoRecipe
    from kdscope.train import TrainConfig

    config = TrainConfig(epochs=1, batch_size=64, augment=Augment.colour_jitter())
    return DemoRecipe(
        train_images=256, transfer_images=128, labelled_fraction=0.25, test_images=64,
        models=(DemoModel("teacher", "teacher", "resnet", {"width": 4, "blocks": 1}, config),
                DemoModel("teacher_star", "other", "resnet", {"width": 4, "blocks": 1}, config)),
        student=DemoModel("kd_student", "student", "student", {"width": 2}, config),
        prune_fine_tune=TrainConfig(epochs=1, batch_size=64, lr=0.01, warmup_epochs=0),
        quantize=QuantizeConfig(calibration_images=64),
        plan=Plan(images=24, robust_images=8, robust_eps=(4 / 255, 8 / 255), gallery_images=3,
                  attacks=({"attack": "fgsm", "eps": 8 / 255},)))


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory, _private_cache):
    """One run of the whole demo loop (train, distil, prune, int8, audit, report) shared by the report tests."""
    from kdscope.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, progress=False, recipe=tiny_demo_recipe())
