"""Structured L1 filter pruning (Li et al. 2017): whole channels are physically removed, so parameters, file size
and CPU latency really drop. Coupled channels (residual additions) are removed together, ranked by the summed L1
norm of the filters that produce them.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from kdscope.compress.channels import ChannelGroup, attention_layers, groups_of, trace
from kdscope.compress.compressed import Compressed, check_data
from kdscope.compress.distill import DistillConfig
from kdscope.compress.masks import fold_masks, masks_of
from kdscope.compress.outcome import check_fine_tuning, fine_tune_pruned, finish_pruned, training_record
from kdscope.compress.reshape import slice_inputs, slice_outputs
from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet
from kdscope.train import TrainConfig


@dataclass(frozen=True)
class StructuredConfig:
    """Remove `ratio` of the channels of every prunable group (at least one channel always stays)."""

    ratio: float = 0.5

    def validate(self) -> None:
        if not (isinstance(self.ratio, (int, float)) and 0.0 <= self.ratio < 1.0):
            raise ValueError(f"ratio must lie in [0, 1), got {self.ratio}; 0.5 removes half of each layer's channels")


def filter_importance(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """Per channel of the group: the summed L1 norm of every producer's filter for that channel."""
    modules = dict(model.named_modules())
    total = torch.zeros(group.channels)
    for name in group.producers:
        weight = modules[name].weight.detach().float().cpu()
        total += weight.abs().flatten(1).sum(1)
    return total


def structured_prune(
    parent: Subject,
    data: ImageSet | None = None,
    config: StructuredConfig = StructuredConfig(),
    *,
    input_shape: tuple[int, int, int] | None = None,
    train: TrainConfig | None = None,
    recover: DistillConfig | None = None,
    eval_data: ImageSet | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    progress: bool = True,
) -> Compressed:
    """Remove the lowest-L1 channels of a copy of `parent`'s model; with `train` (and `data`), fine-tune it (or, with
    `recover`, distil from the parent). The parent is never modified.

    The trace needs one example input: its (C, H, W) come from `data`, or from `input_shape`.
    """
    check_data(data, "structured_prune", required=False)
    config.validate()
    check_fine_tuning(data, train, recover)
    shape = data.image_shape if data is not None else input_shape
    if shape is None:
        raise ValueError("pass data= or input_shape=(C, H, W) so the model can be traced")
    model = fold_masks(parent.model) if masks_of(parent.model) else copy.deepcopy(parent.model)
    model.eval()
    example = torch.zeros(2, *shape, device=parent.device)
    traced = trace(model, example)
    attention = attention_layers(traced)
    if attention:
        raise ValueError(
            f"structured pruning cannot remove channels of {parent.name}'s attention layers "
            f"({', '.join(attention[:8])}{f' and {len(attention) - 8} more' if len(attention) > 8 else ''}): "
            "their outputs are split into heads, and removing whole heads (with the matching inputs of the output "
            "projection) is not implemented. Prune it unstructured instead: prune(...) "
            "(CLI: kdscope compress prune --method magnitude)")
    groups = [g for g in groups_of(model, traced) if g.prunable]
    if not groups:
        raise ValueError(f"{parent.name} has no channel group that can be pruned safely")
    for group in groups:
        importance = filter_importance(model, group)
        remove = min(group.channels - 1, round(config.ratio * group.channels))
        order = torch.argsort(importance, descending=True, stable=True)
        remove_channels(model, group, torch.sort(order[: group.channels - remove]).values)
    name = name or f"{parent.name}_filters{round(config.ratio * 100)}"
    train = fine_tune_pruned(model, parent, data, train, recover, eval_data, name, progress)
    hyperparameters = {"structured": asdict(config), "groups": len(groups), **training_record(train, recover)}
    return finish_pruned(model, parent, name, "prune:structured_l1", hyperparameters, data, eval_data, out,
                         train.seed if train is not None else 0)


@torch.no_grad()
def remove_channels(model: nn.Module, group: ChannelGroup, keep: torch.Tensor) -> None:
    """Keep only channels `keep` along the group's axis in every producer, norm and consumer (in place)."""
    modules = dict(model.named_modules())
    for name in group.producers + group.norms:
        slice_outputs(modules[name], keep)
    for name in group.consumers:
        slice_inputs(modules[name], keep)
    group.channels = len(keep)
