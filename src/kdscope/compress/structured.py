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

from kdscope.compress.channels import ChannelGroup, channel_groups
from kdscope.compress.distill import DistillConfig
from kdscope.compress.masks import fold_masks, masks_of
from kdscope.compress.outcome import PruneResult, check_fine_tuning, fine_tune_pruned, finish_pruned, training_record
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
    subject: Subject,
    config: StructuredConfig = StructuredConfig(),
    *,
    input_shape: tuple[int, int, int] | None = None,
    data: ImageSet | None = None,
    fine_tune: TrainConfig | None = None,
    recover: DistillConfig | None = None,
    eval_data: ImageSet | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    progress: bool = True,
) -> PruneResult:
    """Remove the lowest-L1 channels of a copy of `subject`'s model; optionally fine-tune (or distil from the parent).

    The trace needs one example input: its (C, H, W) come from `data`, or from `input_shape`.
    """
    config.validate()
    check_fine_tuning(data, fine_tune, recover)
    shape = data.image_shape if data is not None else input_shape
    if shape is None:
        raise ValueError("pass data= or input_shape=(C, H, W) so the model can be traced")
    model = fold_masks(subject.model) if masks_of(subject.model) else copy.deepcopy(subject.model)
    model.eval()
    example = torch.zeros(2, *shape, device=subject.device)
    groups = [g for g in channel_groups(model, example) if g.prunable]
    if not groups:
        raise ValueError(f"{subject.name} has no channel group that can be pruned safely")
    for group in groups:
        importance = filter_importance(model, group)
        remove = min(group.channels - 1, round(config.ratio * group.channels))
        order = torch.argsort(importance, descending=True, stable=True)
        remove_channels(model, group, torch.sort(order[: group.channels - remove]).values)
    name = name or f"{subject.name}_filters{round(config.ratio * 100)}"
    fine_tune = fine_tune_pruned(model, subject, data, fine_tune, recover, eval_data, name, progress)
    hyperparameters = {"structured": asdict(config), "groups": len(groups), **training_record(fine_tune, recover)}
    return finish_pruned(model, subject, name, "prune:structured_l1", hyperparameters, data, eval_data, out,
                         fine_tune.seed if fine_tune is not None else 0)


@torch.no_grad()
def remove_channels(model: nn.Module, group: ChannelGroup, keep: torch.Tensor) -> None:
    """Keep only channels `keep` along the group's axis in every producer, norm and consumer (in place)."""
    modules = dict(model.named_modules())
    for name in group.producers + group.norms:
        slice_outputs(modules[name], keep)
    for name in group.consumers:
        slice_inputs(modules[name], keep)
    group.channels = len(keep)
