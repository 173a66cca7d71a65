"""The one training loop: teachers, scratch students, fine-tuning and (through the loss hook) distillation.

The model sees `Subject.normalize(x)` of raw [0, 1] images, so the checkpoint's normalisation is exactly what the
Subject that later audits it applies. Every random draw (order, augmentation) comes from one seeded generator.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from kdscope.core.checkpoint import discard_resume_state, load_resume_state, save_checkpoint, save_resume_state
from kdscope.core.progress import progress_bar, progress_line
from kdscope.core.subject import Subject
from kdscope.data.augment import Augment
from kdscope.data.imageset import UNLABELLED, ImageSet

LossHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""loss(logits, labels, raw_images) -> scalar. An nn.Module hook's own parameters are trained too."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule and options; recorded verbatim in the checkpoint.

    `channels_last` trains convolutional models in NHWC memory layout (1.4x faster for the demo teacher on CPU) and
    hands the model back in the default layout. It is off by default: with torch 2.13's CPU build, backward passes
    of very narrow (2-channel) nets in this layout crashed the process intermittently."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    augment: Augment = field(default_factory=Augment)
    seed: int = 0
    bf16: bool = False
    channels_last: bool = False

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.label_smoothing < 1 or self.warmup_epochs < 0:
            raise ValueError("need lr > 0, weight_decay >= 0, 0 <= label_smoothing < 1, warmup_epochs >= 0")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0


def train(
    model: nn.Module,
    data: ImageSet,
    config: TrainConfig = TrainConfig(),
    *,
    eval_data: ImageSet | None = None,
    loss: LossHook | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    name: str = "model",
    role: str = "other",
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
) -> TrainResult:
    """Train `model` in place on `data` and return its history; with `checkpoint`, save after every epoch.

    Normalisation defaults to the training data's channel statistics. `resume=True` continues from the
    checkpoint's last finished epoch with the optimiser, schedule and random state it had. `on_epoch_end(epoch,
    model)` is called after each finished epoch (e.g. to keep a rewind point for lottery tickets).
    """
    config.validate()
    if len(data) == 0:
        raise ValueError("training data is empty")
    if config.augment.mixup and loss is None:
        raise ValueError("mixup blends two images into a view no hard label describes: train on it only with a "
                         "teacher's output of the same view (distill with alpha=0), or set Augment(mixup=0)")
    if mean is None or std is None:
        mean, std = data.channel_stats()
    subject = Subject(model, name=name, role=role, mean=mean, std=std, class_names=data.class_names)
    memory_format = torch.channels_last if config.channels_last and _has_conv(model) else torch.contiguous_format
    model.to(memory_format=memory_format)
    loss_hook = loss if loss is not None else _cross_entropy(config.label_smoothing)
    params = list(model.parameters()) + (list(loss_hook.parameters()) if isinstance(loss_hook, nn.Module) else [])
    optimizer = _optimizer(config, params)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(config.warmup_epochs * steps_per_epoch, config.epochs * steps_per_epoch)
    )
    generator = torch.Generator().manual_seed(config.seed)
    result, start_epoch, started = TrainResult(), 0, time.perf_counter()
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs the checkpoint path to resume from")
        state = load_resume_state(checkpoint, model, optimizer, schedule, generator, loss_hook)
        start_epoch, result.history = state["epoch"], state["history"]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.bf16 and subject.device.type == "cuda")

    try:
        for epoch in range(start_epoch, config.epochs):
            record = _train_epoch(model, subject, data, config, loss_hook, optimizer, schedule, generator,
                                  memory_format, autocast, params, f"{name} epoch {epoch + 1}/{config.epochs}",
                                  progress)
            record = {"epoch": epoch + 1, **record}
            if eval_data is not None:
                record.update({f"eval_{k}": v for k, v in subject.evaluate(eval_data).items() if k != "n"})
            result.history.append(record)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, model)
            if progress:
                progress_line(f"{name} epoch {epoch + 1}/{config.epochs}: " + ", ".join(
                    f"{k}={v:.4f}" for k, v in record.items() if k != "epoch"))
            if checkpoint is not None:
                save_resume_state(checkpoint, model, optimizer, schedule, generator, loss_hook, epoch + 1,
                                  result.history)
                _save(checkpoint, subject, data, eval_data, config, result)
    finally:
        model.eval()
        model.to(memory_format=torch.contiguous_format)
    result.seconds = time.perf_counter() - started
    result.metrics = {k[len("eval_"):]: v for k, v in result.history[-1].items() if k.startswith("eval_")}
    if checkpoint is not None:
        _save(checkpoint, subject, data, eval_data, config, result)
        discard_resume_state(checkpoint)
    return result


def _train_epoch(model: nn.Module, subject: Subject, data: ImageSet, config: TrainConfig, loss_hook: LossHook,
                 optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler,
                 generator: torch.Generator, memory_format: torch.memory_format, autocast: torch.autocast,
                 params: list[nn.Parameter], description: str, progress: bool) -> dict[str, float]:
    """One pass over shuffled, augmented batches; returns the epoch's mean loss, accuracy (on the images that have a
    label) and final learning rate."""
    model.train()
    if isinstance(loss_hook, nn.Module):
        loss_hook.train()
    total_loss, correct, seen, scored = 0.0, 0, 0, 0
    batches = data.batches(config.batch_size, shuffle=True, generator=generator)
    bar = progress_bar(batches, total=math.ceil(len(data) / config.batch_size), desc=description,
                       disable=not progress, leave=False)
    for x, y in bar:
        x, y = x.to(subject.device), y.to(subject.device)
        if config.augment.active:
            x = config.augment(x, generator)
        x = x.contiguous(memory_format=memory_format)
        with autocast:
            logits = subject.select_logits(model(subject.normalize(x)))
            batch_loss = loss_hook(logits, y, x)
        optimizer.zero_grad(set_to_none=True)
        batch_loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        schedule.step()
        total_loss += float(batch_loss.detach()) * len(y)
        labelled = y != UNLABELLED
        correct += int((logits.argmax(1)[labelled] == y[labelled]).sum())
        seen, scored = seen + len(y), scored + int(labelled.sum())
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / max(scored, 1):.3f}")
    return {"train_loss": total_loss / seen, "train_accuracy": correct / max(scored, 1),
            "lr": schedule.get_last_lr()[0]}


def _save(path: str | Path, subject: Subject, data: ImageSet, eval_data: ImageSet | None, config: TrainConfig,
          result: TrainResult) -> None:
    save_checkpoint(path, subject, extra={
        "data": data.description,
        "input_shape": list(data.image_shape),
        "eval_data": eval_data.description if eval_data is not None else None,
        "train_config": asdict(config),
        "metrics": result.metrics,
        "history": result.history,
        "seed": config.seed,
        "train_seconds": result.seconds,
    })


def _has_conv(model: nn.Module) -> bool:
    """channels_last speeds up 2-D convolutions (about 1.5x on this CPU); it only helps models that have them."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _cross_entropy(label_smoothing: float) -> LossHook:
    def loss(logits: torch.Tensor, labels: torch.Tensor, _images: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    return loss


def _optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                               nesterov=config.momentum > 0)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _warmup_cosine(warmup_steps: float, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up from ~0 to the base rate, then cosine decay to zero at the last step."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1.0, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor
