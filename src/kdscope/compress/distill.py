"""Knowledge distillation through the one trainer's loss hook, always with its control: the independent student.

The KD student and the independent student start from the same initial weights and see the same batches in the same
order with the same augmentation; the only difference is the teacher's term in the loss.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kdscope.compress.compressed import Compressed, check_data
from kdscope.compress.kd_losses import LOSSES, distillation_loss
from kdscope.compress.lineage import Lineage, model_metrics
from kdscope.core.checkpoint import update_metadata
from kdscope.core.layers import TokenLayout, check_layer
from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet
from kdscope.train import TrainConfig
from kdscope.train import train as run_training


@dataclass(frozen=True)
class DistillConfig:
    """Loss `kind` ('kl' Hinton, 'reverse_kl', 'logits' L2), temperature (linearly annealed to `temperature_end`
    when given), weight `alpha` on the hard-label cross-entropy, and FitNets hints as (student layer, teacher layer)
    pairs weighted by `hint_weight`. A hint layer is a conv map (N, C, H, W), a vector (N, C), or a ViT's patch
    tokens (N, T, D), which are laid on their grid as a (N, D, rows, columns) map, prefix tokens dropped."""

    kind: str = field(default="kl", metadata={"choices": LOSSES})
    temperature: float = 4.0
    temperature_end: float | None = None
    alpha: float = 0.5
    hints: tuple[tuple[str, str], ...] = ()
    hint_weight: float = 1.0

    def validate(self) -> None:
        if self.kind not in LOSSES:
            raise ValueError(f"unknown distillation loss {self.kind!r}; choose one of {LOSSES}")
        for value, what in ((self.temperature, "temperature"), (self.temperature_end, "temperature_end")):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{what} must be a positive number, got {value}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha (weight on the label loss) must lie in [0, 1], got {self.alpha}")
        if self.hint_weight < 0:
            raise ValueError(f"hint_weight must be >= 0, got {self.hint_weight}")

    def temperature_at(self, progress: float) -> float:
        """Temperature at a fraction `progress` in [0, 1] of training."""
        if self.temperature_end is None:
            return self.temperature
        return self.temperature + (self.temperature_end - self.temperature) * min(max(progress, 0.0), 1.0)


class DistillationLoss(nn.Module):
    """The trainer's loss hook: the frozen teacher runs once per batch in eval mode under no_grad; FitNets
    regressors (1x1 conv or linear) are its own parameters, trained with the student. `layouts` holds, per hint
    layer name, the token layout that turns a ViT's token output into a map (`_hint_regressors` finds them)."""

    def __init__(self, teacher: Subject, config: DistillConfig, total_steps: int,
                 student_features: dict[str, torch.Tensor], regressors: nn.ModuleDict,
                 layouts: tuple[dict[str, TokenLayout], dict[str, TokenLayout]] = ({}, {})) -> None:
        super().__init__()
        self.teacher, self.config, self.total_steps = teacher, config, total_steps
        self.student_features = student_features
        self.regressors = regressors
        self.student_layouts, self.teacher_layouts = layouts
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        temperature = self.config.temperature_at(int(self.step) / max(1, self.total_steps - 1))
        self.step += 1
        teacher_layers = [t for _, t in self.config.hints]
        with torch.no_grad(), self.teacher.capture(teacher_layers) as teacher_features:
            teacher_logits = self.teacher.logits(images).to(logits.device)
        loss = distillation_loss(logits, teacher_logits, labels, kind=self.config.kind, temperature=temperature,
                                 alpha=self.config.alpha)
        for index, (student_layer, teacher_layer) in enumerate(self.config.hints):
            student_map = _as_map(self.student_features[student_layer], self.student_layouts.get(student_layer))
            teacher_map = _as_map(teacher_features[teacher_layer], self.teacher_layouts.get(teacher_layer))
            student_map, teacher_map = _align(student_map, teacher_map.to(logits.device))
            loss = loss + self.config.hint_weight * F.mse_loss(self.regressors[str(index)](student_map), teacher_map)
        return loss


def distill(
    teacher: Subject,
    data: ImageSet,
    config: DistillConfig = DistillConfig(),
    *,
    student: nn.Module,
    train: TrainConfig = TrainConfig(),
    control: bool = True,
    eval_data: ImageSet | None = None,
    out: str | Path | None = None,
    name: str = "kd_student",
    progress: bool = True,
) -> Compressed:
    """Distil `teacher` into a copy of `student` on `data` with the `train` schedule (teacher and `student` are left
    untouched).

    With `control=True`, `.control` is the independent student: the same architecture from the same initial weights
    on the same data with the same schedule and seed, without the teacher. With `out`, writes OUT/NAME.pt (+ .json
    with the lineage) and OUT/NAME_independent.pt.
    """
    check_data(data, "distill", required=True)
    config.validate()
    train.validate()
    _check_compatible(teacher, student, data)
    mean, std = data.channel_stats()
    initial = copy.deepcopy(student)
    kd_student = copy.deepcopy(initial)
    student_subject = Subject(kd_student, name=name, role="student", mean=mean, std=std,
                              class_names=data.class_names)
    total_steps = train.epochs * math.ceil(len(data) / train.batch_size)
    checkpoint = Path(out) / f"{name}.pt" if out is not None else None
    with student_subject.capture([s for s, _ in config.hints], detach=False) as student_features:
        regressors, layouts = _hint_regressors(teacher, student_subject, data, config.hints, student_features)
        loss = DistillationLoss(teacher, config, total_steps, student_features, regressors, layouts)
        run_training(kd_student, data, train, eval_data=eval_data, loss=loss, mean=mean, std=std,
                     checkpoint=checkpoint, progress=progress, name=name, role="student")
    hyperparameters = {"distill": {**asdict(config), "hints": [list(h) for h in config.hints]}, "train": asdict(train),
                       "student_arch": getattr(student, "kdscope_arch", None)}
    lineage = Lineage(name=name, parent=teacher.name, method=f"distill:{config.kind}",
                      hyperparameters=hyperparameters, data=data.description, seed=train.seed,
                      metrics=model_metrics(student_subject, eval_data))
    result = _recorded(Compressed(student_subject, lineage, checkpoint=checkpoint))
    if not control:
        return result
    return replace(result, control=_independent_student(initial, data, train, hyperparameters, eval_data, out, name,
                                                        mean, std, progress))


def _independent_student(initial: nn.Module, data: ImageSet, train: TrainConfig, hyperparameters: dict,
                         eval_data: ImageSet | None, out: str | Path | None, name: str, mean: tuple[float, ...],
                         std: tuple[float, ...], progress: bool) -> Compressed:
    """The control: `initial` trained on the same data with the same schedule, by cross-entropy alone."""
    control_name = f"{name}_independent"
    model = copy.deepcopy(initial)
    checkpoint = Path(out) / f"{control_name}.pt" if out is not None else None
    run_training(model, data, train, eval_data=eval_data, mean=mean, std=std, checkpoint=checkpoint,
                 progress=progress, name=control_name, role="independent_student")
    subject = Subject(model, name=control_name, role="independent_student", mean=mean, std=std,
                      class_names=data.class_names)
    lineage = Lineage(name=control_name, parent="none (trained without the teacher)", method="independent",
                      hyperparameters={"train": hyperparameters["train"],
                                       "student_arch": hyperparameters["student_arch"]},
                      data=data.description, seed=train.seed, metrics=model_metrics(subject, eval_data),
                      control_of=name)
    return _recorded(Compressed(subject, lineage, checkpoint=checkpoint))


def _recorded(result: Compressed) -> Compressed:
    """Add the lineage to the checkpoint the trainer wrote (which keeps its schedule, history and timing)."""
    if result.checkpoint is not None:
        update_metadata(result.checkpoint, lineage=result.subject.metadata["lineage"])
    return result


def _check_compatible(teacher: Subject, student: nn.Module, data: ImageSet) -> None:
    """Teacher and student must both take these images and predict one logit per class of the data. Both are read
    through a Subject, so a tensor, a tuple or a HuggingFace `ModelOutput` all count."""
    probe = data.images(slice(0, 2))
    student_classes = Subject(student, name="the student").num_classes(probe)
    teacher_classes = teacher.num_classes(probe)
    if teacher_classes != data.num_classes or student_classes != data.num_classes:
        raise ValueError(f"the data has {data.num_classes} classes but the teacher predicts {teacher_classes} and "
                         f"the student {student_classes}; build the student with num_classes={data.num_classes}")


def _hint_regressors(teacher: Subject, student: Subject, data: ImageSet, hints: tuple[tuple[str, str], ...],
                     student_features: dict[str, torch.Tensor],
                     ) -> tuple[nn.ModuleDict, tuple[dict[str, TokenLayout], dict[str, TokenLayout]]]:
    """One learned map per hint pair from the student's channels to the teacher's, sized by a dry run, and the token
    layouts of the hint layers that output ViT tokens (student's, teacher's)."""
    regressors = nn.ModuleDict()
    layouts: tuple[dict[str, TokenLayout], dict[str, TokenLayout]] = ({}, {})
    if not hints:
        return regressors, layouts
    for student_layer, teacher_layer in hints:
        student.layer(student_layer)
        teacher.layer(teacher_layer)
    probe = data.images(slice(0, 2))
    with torch.no_grad(), teacher.capture([t for _, t in hints]) as teacher_features:
        student.logits(probe)
        teacher.logits(probe)
    for index, (student_layer, teacher_layer) in enumerate(hints):
        maps = []
        for subject, layer, features, found in ((student, student_layer, student_features, layouts[0]),
                                                (teacher, teacher_layer, teacher_features, layouts[1])):
            tensor = features[layer]
            if tensor.ndim == 3:
                found[layer] = _token_layout(subject, probe, layer, (student_layer, teacher_layer))
                tensor = found[layer].to_map(tensor)
            maps.append(tensor)
        s, t = maps
        if s.ndim != t.ndim or s.ndim not in (2, 4):
            raise ValueError(
                f"hint pair ({student_layer!r} -> {teacher_layer!r}): features of shape {tuple(s.shape)} and "
                f"{tuple(t.shape)} cannot be matched; pair two conv maps (N, C, H, W) or ViT patch tokens "
                "(N, T, D), or two vectors (N, C)"
            )
        layer = nn.Conv2d(s.shape[1], t.shape[1], 1) if s.ndim == 4 else nn.Linear(s.shape[1], t.shape[1])
        regressors[str(index)] = layer.to(student.device)
    student_features.clear()
    return regressors, layouts


def _token_layout(subject: Subject, probe: torch.Tensor, layer: str, pair: tuple[str, str]) -> TokenLayout:
    """The layout of a (N, T, D) hint layer's patch tokens; anything else of rank 3 (a patch embedding without its
    prefix tokens, a sequence model's states) is refused with the layers that would do."""
    try:
        layout = check_layer(subject, probe, layer)
    except ValueError as error:
        raise ValueError(f"hint pair {pair}: {error}") from None
    if layout is None:
        raise ValueError(f"hint pair {pair}: layer {layer!r} of {subject.name} outputs (N, T, D) values that are "
                         "not a ViT's patch tokens; name a block's output or a conv map")
    return layout


def _as_map(features: torch.Tensor, layout: TokenLayout | None) -> torch.Tensor:
    """A hint layer's output as the regressor takes it: ViT tokens on their patch grid, anything else as it is."""
    return features if layout is None else layout.to_map(features)


def _align(student_map: torch.Tensor, teacher_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool conv maps to the smaller spatial size so a 1x1 regressor can compare them."""
    if student_map.ndim == 4 and student_map.shape[2:] != teacher_map.shape[2:]:
        size = tuple(min(a, b) for a, b in zip(student_map.shape[2:], teacher_map.shape[2:]))
        student_map = F.adaptive_avg_pool2d(student_map, size)
        teacher_map = F.adaptive_avg_pool2d(teacher_map, size)
    return student_map, teacher_map
