"""Pruning masks as first-class model state: a weight parametrization `weight = original * mask`.

The mask lives in the module (a buffer of the parametrization), so a masked model deep-copies, saves and loads with
its masks, and the forward pass can never use a pruned weight. The pruned entries of `original` are zeroed too:
their gradient is exactly zero through the mask, so SGD (with momentum and weight decay) and AdamW keep them at zero
and parameter counts stay honest; `enforce_masks` re-zeroes them after anything else touches the weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

PRUNABLE = (nn.Conv2d, nn.Linear)


class WeightMask(nn.Module):
    """The parametrization: multiplies the stored weight by a fixed 0/1 mask."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def prunable_layers(model: nn.Module, names: list[str] | None = None) -> dict[str, nn.Module]:
    """Conv2d and Linear layers by name (all of them, or the named ones, each checked)."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE)}
    if names is None:
        return layers
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise ValueError(f"cannot prune {unknown}: not Conv2d/Linear layers of the model; choose from {list(layers)}")
    return {n: layers[n] for n in names}


def weight_of(module: nn.Module) -> torch.Tensor:
    """The stored weight tensor (the parametrization's original when masked)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def mask_of(module: nn.Module) -> torch.Tensor | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    return next(p for p in module.parametrizations.weight if isinstance(p, WeightMask)).mask


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Install (or replace) masks on the named layers of `model`, in place, and zero the pruned weights."""
    layers = prunable_layers(model, list(masks))
    for name, mask in masks.items():
        module = layers[name]
        if tuple(mask.shape) != tuple(weight_of(module).shape):
            raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, weight {tuple(weight_of(module).shape)}")
        existing = mask_of(module)
        if existing is None:
            parametrize.register_parametrization(module, "weight", WeightMask(mask.to(weight_of(module).device)))
        else:
            existing.copy_(mask)
    enforce_masks(model)


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every installed mask by layer name."""
    found = {name: mask_of(m) for name, m in prunable_layers(model).items()}
    return {name: mask for name, mask in found.items() if mask is not None}


@torch.no_grad()
def enforce_masks(model: nn.Module) -> None:
    """Zero every pruned entry of the stored weights (idempotent)."""
    for module in prunable_layers(model).values():
        mask = mask_of(module)
        if mask is not None:
            weight_of(module).mul_(mask)


def fold_masks(model: nn.Module) -> nn.Module:
    """A plain copy with the masked weights baked in and no parametrizations (for export and quantization).

    `parametrize.remove_parametrizations` is not used: it edits the parametrized class, which a deep copy shares with
    the original model, and would break the original."""
    plain = copy.deepcopy(model)
    for module in prunable_layers(plain).values():
        if parametrize.is_parametrized(module, "weight"):
            weight = module.weight.detach().clone()
            module.__class__ = module.__class__.__bases__[0]
            del module._modules["parametrizations"]
            module.weight = nn.Parameter(weight)
    return plain


def sparsity_report(model: nn.Module) -> dict:
    """Fraction of zero weights per prunable layer and overall (the weights the forward pass really uses)."""
    per_layer, zeros, total = {}, 0, 0
    with torch.no_grad():
        for name, module in prunable_layers(model).items():
            weight = module.weight
            layer_zeros = int((weight == 0).sum())
            per_layer[name] = layer_zeros / weight.numel()
            zeros, total = zeros + layer_zeros, total + weight.numel()
    return {"global": zeros / total if total else 0.0, "layers": per_layer}
