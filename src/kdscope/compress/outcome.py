"""The common end of every pruning method: measure the model, write its lineage, save it if asked."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from kdscope.compress.compressed import Compressed
from kdscope.compress.distill import DistillationLoss, DistillConfig
from kdscope.compress.lineage import Lineage, model_metrics
from kdscope.compress.logits import logits_only
from kdscope.compress.masks import masks_of, sparsity_report
from kdscope.compress.reshape import layer_shapes
from kdscope.core.checkpoint import save_checkpoint
from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet
from kdscope.train import TrainConfig
from kdscope.train import train as run_training


def check_fine_tuning(data: ImageSet | None, train: TrainConfig | None, recover: DistillConfig | None) -> None:
    if (train is not None or recover is not None) and data is None:
        raise ValueError("fine-tuning needs training data: pass data=ImageSet")
    if recover is not None:
        recover.validate()


def fine_tune_pruned(model: nn.Module, parent: Subject, data: ImageSet | None, train: TrainConfig | None,
                     recover: DistillConfig | None, eval_data: ImageSet | None, name: str,
                     progress: bool) -> TrainConfig | None:
    """Train the pruned `model` in place, by cross-entropy or (with `recover`) by distillation from the unpruned
    parent (2 epochs when no schedule is given), its logits found by the parent's output rule; returns the schedule
    used, None when there was none."""
    if recover is not None and train is None:
        train = TrainConfig(epochs=2)
    if train is None:
        return None
    loss = None
    if recover is not None:
        steps = train.epochs * math.ceil(len(data) / train.batch_size)
        loss = DistillationLoss(parent, recover, steps, {}, nn.ModuleDict())
    mean, std = normalisation(parent)
    run_training(logits_only(model, parent), data, train, eval_data=eval_data, loss=loss, mean=mean, std=std,
                 progress=progress, name=name, role="pruned")
    return train


def training_record(train: TrainConfig | None, recover: DistillConfig | None) -> dict:
    """The fine-tuning part of a pruned model's hyper-parameters."""
    return {"fine_tune": asdict(train) if train is not None else None,
            "recover": asdict(recover) if recover is not None else None}


def finish_pruned(model: nn.Module, parent: Subject, name: str, method: str, hyperparameters: dict,
                  data: ImageSet | None, eval_data: ImageSet | None, out: str | Path | None, seed: int, *,
                  control_of: str | None = None, extra_metrics: dict | None = None) -> Compressed:
    """Wrap the pruned `model` as a Subject with its lineage (sparsity included); with `out`, save OUT/NAME.pt."""
    model.eval()
    report = sparsity_report(model)
    compression = {"shapes": layer_shapes(model), "masked_layers": sorted(masks_of(model))}
    mean, std = normalisation(parent)
    subject = Subject(model, name=name, role="pruned", mean=mean, std=std, class_names=parent.class_names,
                      metadata={"compression": compression}, output=parent.output)
    metrics = {**model_metrics(subject, eval_data), "sparsity": report["global"], "layer_sparsity": report["layers"],
               **(extra_metrics or {})}
    lineage = Lineage(name=name, parent=parent.name, method=method, hyperparameters=hyperparameters,
                      data=data.description if data is not None else {}, seed=seed, metrics=metrics,
                      control_of=control_of)
    result = Compressed(subject, lineage, checkpoint=Path(out) / f"{name}.pt" if out is not None else None)
    if result.checkpoint is not None:
        save_checkpoint(result.checkpoint, subject, extra={"metrics": metrics})
    return result


def normalisation(subject: Subject) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The Subject's mean and std as plain tuples, the form the trainer takes."""
    return _as_tuple(subject.mean), _as_tuple(subject.std)


def _as_tuple(values: torch.Tensor | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(values.flatten().tolist())
