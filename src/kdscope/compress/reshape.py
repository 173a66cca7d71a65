"""Resize Conv2d/Linear/BatchNorm layers along their channel axes: used to remove channels and to rebuild a
structurally pruned model from its recorded shapes."""

from __future__ import annotations

import torch
from torch import nn


def layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """[in, out] of every Conv2d/Linear and [features] of every BatchNorm: enough to rebuild a pruned model."""
    shapes = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            shapes[name] = [module.in_channels, module.out_channels]
        elif isinstance(module, nn.Linear):
            shapes[name] = [module.in_features, module.out_features]
        elif isinstance(module, nn.BatchNorm2d):
            shapes[name] = [module.num_features]
    return shapes


@torch.no_grad()
def restore_shapes(model: nn.Module, shapes: dict[str, list[int]]) -> None:
    """Shrink a freshly built zoo model to the recorded shapes so a pruned state_dict loads into it."""
    modules = dict(model.named_modules())
    for name, sizes in shapes.items():
        if name not in modules:
            raise ValueError(f"the checkpoint records a pruned layer {name!r} that the architecture does not have")
        module = modules[name]
        slice_outputs(module, torch.arange(sizes[-1]))
        if len(sizes) == 2:
            slice_inputs(module, torch.arange(sizes[0]))


def slice_outputs(module: nn.Module, keep: torch.Tensor) -> None:
    """Keep output channels `keep` of a Conv2d/Linear, or features `keep` of a BatchNorm2d (in place)."""
    keep = keep.to(_device(module))
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        module.weight = nn.Parameter(module.weight[keep].clone())
        if module.bias is not None:
            module.bias = nn.Parameter(module.bias[keep].clone())
        if isinstance(module, nn.Conv2d):
            module.out_channels = len(keep)
        else:
            module.out_features = len(keep)
    elif isinstance(module, nn.BatchNorm2d):
        for attribute in ("weight", "bias"):
            if getattr(module, attribute) is not None:
                setattr(module, attribute, nn.Parameter(getattr(module, attribute)[keep].clone()))
        for attribute in ("running_mean", "running_var"):
            if getattr(module, attribute) is not None:
                setattr(module, attribute, getattr(module, attribute)[keep].clone())
        module.num_features = len(keep)
    else:
        raise TypeError(f"cannot remove output channels of {type(module).__name__}")


def slice_inputs(module: nn.Module, keep: torch.Tensor) -> None:
    """Keep input channels `keep` of a Conv2d/Linear (in place)."""
    keep = keep.to(_device(module))
    module.weight = nn.Parameter(module.weight[:, keep].clone())
    if isinstance(module, nn.Conv2d):
        module.in_channels = len(keep)
    else:
        module.in_features = len(keep)


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
