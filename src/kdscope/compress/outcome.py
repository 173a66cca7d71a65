"""The common end of every pruning method: measure the model, write its lineage, save it if asked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kdscope.checkpoint import save_checkpoint
from kdscope.compress.lineage import Lineage, model_metrics
from kdscope.compress.masks import masks_of, sparsity_report
from kdscope.compress.reshape import layer_shapes
from kdscope.data.imageset import ImageSet
from kdscope.subject import Subject


@dataclass
class PruneResult:
    subject: Subject
    lineage: Lineage


def finish_pruned(model: nn.Module, parent: Subject, name: str, method: str, hyperparameters: dict,
                  data: ImageSet | None, eval_data: ImageSet | None, out: str | Path | None, seed: int) -> PruneResult:
    """Wrap the pruned `model` as a Subject with its lineage (sparsity included); with `out`, save OUT/NAME.pt."""
    model.eval()
    report = sparsity_report(model)
    compression = {"shapes": layer_shapes(model), "masked_layers": sorted(masks_of(model))}
    mean, std = normalisation(parent)
    subject = Subject(model, name=name, role="pruned", mean=mean, std=std, class_names=parent.class_names,
                      metadata={"compression": compression})
    metrics = {**model_metrics(subject, eval_data), "sparsity": report["global"], "layer_sparsity": report["layers"]}
    lineage = Lineage(name=name, parent=parent.name, method=method, hyperparameters=hyperparameters,
                      data=data.description if data is not None else {}, seed=seed, metrics=metrics)
    subject.metadata["lineage"] = lineage.to_dict()
    if out is not None:
        save_checkpoint(Path(out) / f"{name}.pt", subject, extra={"metrics": metrics})
    return PruneResult(subject, lineage)


def normalisation(subject: Subject) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The Subject's mean and std as plain tuples, the form the trainer takes."""
    return _as_tuple(subject.mean), _as_tuple(subject.std)


def _as_tuple(values: torch.Tensor | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(values.flatten().tolist())
