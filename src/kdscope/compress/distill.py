"""Knowledge distillation through the one trainer's loss hook, with its controls (the independent student first).

The KD student and each control start from the same initial weights and see the same batches in the same order with
the same augmentation; each control differs in one thing only (no teacher, the teacher's argmax, another teacher).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kdscope.compress.compressed import Compressed, check_data
from kdscope.compress.controls import check_controls, matched_schedule, random_teacher, with_transfer
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
    """Loss `kind` ('kl' Hinton, 'reverse_kl', 'logits' L2, 'pseudo_label' the teacher's argmax), temperature
    (linearly annealed to `temperature_end` when given), weight `alpha` on the hard-label cross-entropy, and
    FitNets hints as (student layer, teacher layer) pairs weighted by `hint_weight`. A hint layer is a conv map
    (N, C, H, W), a vector (N, C), or a ViT's patch tokens (N, T, D), which are laid on their grid as a
    (N, D, rows, columns) map, prefix tokens dropped."""

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
    transfer: ImageSet | None = None,
    controls: Sequence[str] = ("independent",),
    other_teacher: Subject | None = None,
    eval_data: ImageSet | None = None,
    out: str | Path | None = None,
    name: str = "kd_student",
    progress: bool = True,
) -> Compressed:
    """Distil `teacher` into a copy of `student` on the labelled `data`, plus the unlabelled `transfer` images when
    given (their labels are never read: the label term covers `data`, the teacher's term every image), with the
    `train` schedule. Teacher and `student` are left untouched.

    `controls` trains, from the same initial weights with the same batches, augmentation and seed, the students
    every KD claim is judged against (SPEC §12), one difference each:
    'independent' (no teacher: `data` alone, for as many optimisation steps as the KD student takes),
    'pseudo_label' (the teacher's argmax instead of its distribution: separates more data from dark knowledge),
    'random_teacher' (an untrained copy of the teacher), 'other_teacher' (`other_teacher` instead, e.g. a teacher
    trained without the invariance being probed). `.control` is the independent student, `.controls` all of them.
    With `out`, writes OUT/NAME.pt (+ .json with the lineage) and OUT/NAME_CONTROL.pt for each control.
    """
    check_data(data, "distill", required=True)
    config.validate()
    train.validate()
    check_controls(controls, other_teacher, config.alpha, train)
    _check_compatible(teacher, student, data)
    if other_teacher is not None:
        _check_compatible(other_teacher, student, data)
    untrained = random_teacher(teacher, train.seed) if "random_teacher" in controls else None
    taught = with_transfer(data, transfer)
    mean, std = data.channel_stats()
    run = _Run(student=copy.deepcopy(student), data=taught, train=train, eval_data=eval_data, out=out, mean=mean,
               std=std, progress=progress)
    result = run.distil(teacher, config, name, "student")
    built = []
    for kind in controls:
        if kind == "independent":
            built.append(run.independent(data, name))
        elif kind == "pseudo_label":
            built.append(run.distil(teacher, replace(config, kind="pseudo_label"), f"{name}_pseudo_label",
                                    "pseudo_label_student", control_of=name))
        elif kind == "random_teacher":
            built.append(run.distil(untrained, config, f"{name}_random_teacher", "random_teacher_student",
                                    control_of=name))
        else:
            built.append(run.distil(other_teacher, config, f"{name}_other_teacher", "other_teacher_student",
                                    control_of=name))
    independent = next((c for c in built if c.subject.role == "independent_student"), None)
    return replace(result, control=independent, controls=tuple(built))


@dataclass
class _Run:
    """What the distilled student and its controls share: initial weights, data, schedule, normalisation, outputs."""

    student: nn.Module
    data: ImageSet
    train: TrainConfig
    eval_data: ImageSet | None
    out: str | Path | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    progress: bool

    def distil(self, teacher: Subject, config: DistillConfig, name: str, role: str,
               control_of: str | None = None) -> Compressed:
        model = copy.deepcopy(self.student)
        subject = Subject(model, name=name, role=role, mean=self.mean, std=self.std,
                          class_names=self.data.class_names)
        total_steps = self.train.epochs * math.ceil(len(self.data) / self.train.batch_size)
        checkpoint = self._checkpoint(name)
        with subject.capture([s for s, _ in config.hints], detach=False) as student_features:
            regressors, layouts = _hint_regressors(teacher, subject, self.data, config.hints, student_features)
            loss = DistillationLoss(teacher, config, total_steps, student_features, regressors, layouts)
            run_training(model, self.data, self.train, eval_data=self.eval_data, loss=loss, mean=self.mean,
                         std=self.std, checkpoint=checkpoint, progress=self.progress, name=name, role=role)
        lineage = Lineage(name=name, parent=teacher.name, method=f"distill:{config.kind}",
                          hyperparameters=self._hyperparameters(config, self.train), data=self.data.description,
                          seed=self.train.seed, metrics=model_metrics(subject, self.eval_data),
                          control_of=control_of)
        return _recorded(Compressed(subject, lineage, checkpoint=checkpoint))

    def independent(self, labelled: ImageSet, name: str) -> Compressed:
        """The control without a teacher: the labelled images alone, by cross-entropy, for as many optimisation
        steps as the distilled student (more epochs over fewer images when it had a transfer set), without mixup
        (no teacher labels a mixed view)."""
        control_name = f"{name}_independent"
        schedule = matched_schedule(self.train, len(self.data), len(labelled))
        model = copy.deepcopy(self.student)
        checkpoint = self._checkpoint(control_name)
        run_training(model, labelled, schedule, eval_data=self.eval_data, mean=self.mean, std=self.std,
                     checkpoint=checkpoint, progress=self.progress, name=control_name, role="independent_student")
        subject = Subject(model, name=control_name, role="independent_student", mean=self.mean, std=self.std,
                          class_names=labelled.class_names)
        hyperparameters = self._hyperparameters(None, schedule)
        lineage = Lineage(name=control_name, parent="none (trained without the teacher)", method="independent",
                          hyperparameters=hyperparameters, data=labelled.description, seed=schedule.seed,
                          metrics=model_metrics(subject, self.eval_data), control_of=name)
        return _recorded(Compressed(subject, lineage, checkpoint=checkpoint))

    def _checkpoint(self, name: str) -> Path | None:
        return Path(self.out) / f"{name}.pt" if self.out is not None else None

    def _hyperparameters(self, config: DistillConfig | None, schedule: TrainConfig) -> dict:
        found = {"train": asdict(schedule), "student_arch": getattr(self.student, "kdscope_arch", None)}
        if config is not None:
            found["distill"] = {**asdict(config), "hints": [list(h) for h in config.hints]}
        return found


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
