"""Hand-written models we did not design the audit around (GELU, SiLU, an MLP, one channel, 100 classes) go through
every stage: each stage is filled, or says why it could not be, and the report renders."""

import numpy as np
import pytest
import torch
from torch import nn

from kdscope import ImageSet, Subject
from kdscope.audit import Plan, audit
from kdscope.reports import render_html
from kdscope.results.values import Unavailable


def conv_net(activation: type[nn.Module], channels: int, classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), activation(), nn.Conv2d(6, 8, 3, padding=1),
                         activation(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))


def mlp(channels: int, classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * 16 * 16, 32), nn.ReLU(), nn.Linear(32, classes))


def images(channels: int, classes: int) -> ImageSet:
    generator = np.random.default_rng(0)
    labels = np.arange(24) % classes
    pixels = generator.integers(0, 256, (24, channels, 16, 16), dtype=np.uint8)
    return ImageSet(pixels, labels, tuple(f"class{c}" for c in range(classes)))


MODELS = {
    "gelu": (lambda seed: conv_net(nn.GELU, 3, 5, seed), 3, 5),
    "silu": (lambda seed: conv_net(nn.SiLU, 3, 5, seed), 3, 5),
    "mlp": (lambda seed: mlp(3, 5, seed), 3, 5),
    "one_channel": (lambda seed: conv_net(nn.ReLU, 1, 5, seed), 1, 5),
    "hundred_classes": (lambda seed: conv_net(nn.ReLU, 3, 100, seed), 3, 100),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_stage_is_filled_or_says_why(kind):
    build, channels, classes = MODELS[kind]
    data = images(channels, classes)
    subjects = [Subject(build(seed), name=name, role=role, mean=[0.5], std=[0.25], class_names=data.class_names)
                for seed, name, role in ((0, "teacher", "teacher"), (1, "other", "other"))]
    plan = Plan(images=24, stages=("predictions", "cka", "cams", "attacks", "sanity"),
                explainers=("gradcam", "guided_backprop", "gradient"),
                attacks=({"attack": "fgsm", "eps": 8 / 255},), robust_eps=(4 / 255,), robust_images=4,
                sanity_methods=("gradient", "guided_backprop"))
    results = audit(subjects, data, plan, progress=False)
    cams = results.stages["cams"].methods
    assert not isinstance(cams["gradient"]["other"], Unavailable)
    gradcam = cams["gradcam"]["other"]
    assert isinstance(gradcam, Unavailable) == (kind == "mlp")
    guided = cams["guided_backprop"]["other"]
    assert isinstance(guided, Unavailable) == (kind in ("gelu", "silu"))
    if isinstance(guided, Unavailable):
        assert "no rule for" in guided.reason and ("gelu" in guided.reason or "silu" in guided.reason)
    grid = results.stages["cka"].grids["other"]
    assert isinstance(grid, Unavailable) == (kind == "mlp")
    sanity = results.stages["sanity"].models["teacher"]
    assert isinstance(sanity["guided_backprop"], Unavailable) == (kind in ("gelu", "silu"))
    assert results.stages["attacks"].matrices[0].cells
    assert "teacher" in render_html(results)
