"""What distillation's controls need (SPEC §12): the training set with a transfer set, the independent student's
step-matched schedule, and the random teacher (Mason-Williams et al. 2025)."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet, PartlyLabelled
from kdscope.train import TrainConfig

CONTROLS = ("independent", "pseudo_label", "random_teacher", "other_teacher")


def check_controls(controls: Sequence[str], other_teacher: Subject | None, alpha: float, train: TrainConfig) -> None:
    """Refuse, before any training, controls that do not exist or lack what they need, and mixup with a label
    term (a mixed view has no hard label)."""
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown or len(set(controls)) != len(controls):
        raise ValueError(f"controls must be distinct names from {CONTROLS}, got {list(controls)}")
    if "other_teacher" in controls and other_teacher is None:
        raise ValueError("the 'other_teacher' control needs other_teacher=Subject(...) (for example a teacher "
                         "trained without the invariance being probed)")
    if other_teacher is not None and "other_teacher" not in controls:
        raise ValueError("other_teacher is given but controls do not include 'other_teacher'")
    if train.augment.mixup and alpha > 0:
        raise ValueError("mixup (function matching) trains on the teacher's output of each mixed view alone: "
                         f"set DistillConfig(alpha=0), not {alpha}")


def with_transfer(labelled: ImageSet, transfer: ImageSet | None) -> ImageSet:
    """The labelled images followed by the transfer images, whose labels are dropped here (set to 0 and marked
    unlabelled), so no loss can read them."""
    if transfer is None:
        return labelled
    if transfer.image_shape != labelled.image_shape:
        raise ValueError(f"the transfer images are {transfer.image_shape} but the labelled ones "
                         f"{labelled.image_shape}: both must be what the models take")
    if len(transfer) == 0:
        raise ValueError("the transfer set is empty")
    return PartlyLabelled(
        pixels=np.concatenate([np.asarray(labelled.pixels[:]), np.asarray(transfer.pixels[:])]),
        labels=np.concatenate([labelled.labels, np.zeros(len(transfer), np.int64)]),
        class_names=labelled.class_names,
        extras={"labelled": np.arange(len(labelled) + len(transfer)) < len(labelled)},
        description={"labelled": labelled.description, "transfer": transfer.description})


def matched_schedule(train: TrainConfig, taught_images: int, labelled_images: int) -> TrainConfig:
    """The independent student's schedule: as many optimisation steps over the labelled images as the distilled
    student takes over labelled + transfer images (epochs and warm-up scaled alike), and no mixup."""
    augment = replace(train.augment, mixup=0.0) if train.augment.mixup else train.augment
    if taught_images == labelled_images:
        return replace(train, augment=augment)
    steps = train.epochs * math.ceil(taught_images / train.batch_size)
    per_epoch = math.ceil(labelled_images / train.batch_size)
    epochs = math.ceil(steps / per_epoch)
    return replace(train, epochs=epochs, warmup_epochs=train.warmup_epochs * epochs / train.epochs, augment=augment)


def random_teacher(teacher: Subject, seed: int) -> Subject:
    """An untrained copy of the teacher (every layer's own initialisation, seeded): the control for what
    distillation gives without any knowledge in the teacher. Refuses a model with parameters that no layer can
    re-initialise (they would keep trained values)."""
    model = copy.deepcopy(teacher.model)
    stuck = [name or type(model).__name__ for name, module in model.named_modules()
             if any(True for _ in module.parameters(recurse=False)) and not hasattr(module, "reset_parameters")]
    if stuck:
        raise ValueError(f"cannot make a random teacher from {teacher.name}: {', '.join(stuck[:5])} hold parameters "
                         "without reset_parameters(); pass an untrained copy as other_teacher= instead")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    model.eval()
    listed = [None if v is None else v.flatten().tolist() for v in (teacher.mean, teacher.std)]
    return Subject(model, name=f"{teacher.name}_random", role="other", mean=listed[0], std=listed[1],
                   input_range=teacher.input_range, device=teacher.device, class_names=teacher.class_names,
                   outputs=teacher.outputs, output=teacher.output)

