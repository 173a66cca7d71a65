"""The audit's shared state (`AuditContext`): what every stage reads, and the batches images stream in."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import torch

from kdscope.audit.plan import Plan
from kdscope.compare.cka import shuffled_pairing
from kdscope.core.inputs import reference_subject
from kdscope.core.profile import weights_digest
from kdscope.core.subject import Subject
from kdscope.core.version import __version__
from kdscope.data.imageset import ImageSet
from kdscope.explainers.layers import hookable, representation_layers
from kdscope.results.schema import SCHEMA_VERSION


class AuditContext:
    """The audit's shared state, handed to every stage: Subjects and their roles, the audit images (in memory or
    read lazily) with their labels, the plan, the CKA control's pairing, why a method could not explain a model
    (`refusals`, found on the first batch that tried), and what stages build once and reuse (`shared`)."""

    def __init__(self, subjects: list[Subject], images: ImageSet, plan: Plan, indices: np.ndarray) -> None:
        if plan.batch_size is None:
            raise ValueError("the audit context needs a plan with its batch size resolved")
        self.subjects, self.images, self.plan, self.indices = subjects, images, plan, indices
        self.y = images.targets()
        self.teacher = reference_subject(subjects)
        self.others = [s for s in subjects if s is not self.teacher]
        self.distilled = next((s for s in subjects if s.role == "student"), None)
        self.independent = next((s for s in subjects if s.role == "independent_student"), None)
        self.second_independent = next((s for s in subjects if s.role == "independent_student"
                                        and s is not self.independent), None)
        self.pairing = shuffled_pairing(len(images), plan.seed).numpy()
        self.refusals: dict[tuple[str, str], str] = {}
        self.shared: dict[str, object] = {}
        self._cka_layers: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self.y)

    @property
    def batch_count(self) -> int:
        return -(-len(self) // self.plan.batch_size)

    def read(self, positions: np.ndarray) -> torch.Tensor:
        """Raw [0, 1] images at audit positions, read (or rendered, or decoded) now."""
        return self.images.images(np.asarray(positions))

    def key(self, stage: str) -> str:
        """Everything that changes a stage's result: plan, models (weights, normalisation, input range, classes),
        the images with their labels and class order, and the results schema its record is written in. The device
        and the number of processes are left out: results do not depend on them."""
        fingerprint = {"stage": stage, "plan": plain(asdict(self.plan)), "kdscope": __version__,
                       "schema": SCHEMA_VERSION,
                       "models": [[s.name, s.role, weights_digest(s.model), _listed(s.mean), _listed(s.std),
                                   list(s.input_range), list(s.class_names or [])] for s in self.subjects],
                       "images": _pixels_digest(self.images),
                       "labels": hashlib.sha256(self.images.labels.astype("<i8").tobytes()).hexdigest(),
                       "classes": list(self.images.class_names)}
        return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()

    def cka_layers(self, subject: Subject) -> list[str]:
        if subject.name not in self._cka_layers:
            chosen = self.plan.cka_layers.get(subject.name, "auto")
            if chosen != "auto":
                layers = list(chosen)
            elif subject.twin is not None or not hookable(subject):
                layers = []
            else:
                layers = representation_layers(subject, self.read(np.arange(1)))
            self._cka_layers[subject.name] = layers
        return self._cka_layers[subject.name]


def _pixels_digest(images: ImageSet) -> str:
    """The images' bytes for an in-memory set; for a lazy one, what its source says identifies them (reading
    50,000 images only to name them would cost a pass over the data)."""
    if images.lazy:
        return images.pixels.fingerprint
    return hashlib.sha256(np.ascontiguousarray(images.pixels).tobytes()).hexdigest()


def _listed(values: torch.Tensor | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values.flatten()]


def plain(value: object) -> object:
    """JSON-ready copy: tuples become lists, numpy and torch scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value
