"""Small architectures for the demo and the tests: `build(name, num_classes, width=...)`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kdscope.zoo.plain import VGG, NarrowCNN
from kdscope.zoo.resnet import ResNet

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"resnet": ResNet, "student": NarrowCNN, "vgg": VGG}


def build(name: str, num_classes: int = 10, *, seed: int | None = None, **kwargs: int) -> nn.Module:
    """Build a zoo model. With `seed`, initialisation is reproducible and the global RNG is left untouched.

    The architecture and its arguments are stored on the model (`kdscope_arch`) so checkpoints can rebuild it.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = ARCHITECTURES[name](num_classes=num_classes, **kwargs)
    model.kdscope_arch = {"name": name, "kwargs": {"num_classes": num_classes, **kwargs}}
    return model


__all__ = ["ARCHITECTURES", "VGG", "NarrowCNN", "ResNet", "build"]
