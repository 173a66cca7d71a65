"""The audit's shared state (`AuditContext`): what every stage reads, and the work stages share."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import torch

from kdscope.audit.plan import Plan
from kdscope.compare.cka import as_rows
from kdscope.core.inputs import reference_subject
from kdscope.core.profile import weights_digest
from kdscope.core.subject import Subject
from kdscope.core.version import __version__
from kdscope.data.imageset import ImageSet
from kdscope.explainers.layers import hookable, representation_layers
from kdscope.results.schema import SCHEMA_VERSION


class AuditContext:
    """The audit's shared state, handed to every stage: Subjects, images, roles, the plan, and each model's one
    forward pass and one map per explainer (computed on first use, shared by the stages that need them)."""

    def __init__(self, subjects: list[Subject], images: ImageSet, plan: Plan, indices: np.ndarray) -> None:
        self.subjects, self.images, self.plan, self.indices = subjects, images, plan, indices
        self.x, self.y = images.images(), images.targets()
        self.teacher = reference_subject(subjects)
        self.others = [s for s in subjects if s is not self.teacher]
        self.distilled = next((s for s in subjects if s.role == "student"), None)
        self.independent = next((s for s in subjects if s.role == "independent_student"), None)
        self.second_independent = next((s for s in subjects if s.role == "independent_student"
                                        and s is not self.independent), None)
        self._forward: dict[str, dict] = {}
        self._maps: dict[tuple[str, str], torch.Tensor] = {}

    def key(self, stage: str) -> str:
        """Everything that changes a stage's result: plan, models (weights, normalisation, input range, classes),
        the images with their labels and class order, and the results schema its record is written in. The device
        is left out: results do not depend on it."""
        fingerprint = {"stage": stage, "plan": plain(asdict(self.plan)), "kdscope": __version__,
                       "schema": SCHEMA_VERSION,
                       "models": [[s.name, s.role, weights_digest(s.model), _listed(s.mean), _listed(s.std),
                                   list(s.input_range), list(s.class_names or [])] for s in self.subjects],
                       "images": hashlib.sha256(self.images.pixels.tobytes()).hexdigest(),
                       "labels": hashlib.sha256(self.images.labels.astype("<i8").tobytes()).hexdigest(),
                       "classes": list(self.images.class_names)}
        return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()

    def forward(self, subject: Subject) -> dict:
        """Probabilities and pooled features at the model's CKA layers, from one pass over the audit images."""
        if subject.name not in self._forward:
            layers = self.cka_layers(subject)
            probabilities, features = [], {name: [] for name in layers}
            with torch.no_grad():
                for x, _ in self.images.batches(256):
                    with subject.capture(layers) as taps:
                        probabilities.append(subject.logits(x).float().softmax(1).cpu())
                    for name in layers:
                        features[name].append(as_rows(taps[name]).cpu())
            self._forward[subject.name] = {"probabilities": torch.cat(probabilities),
                                           "features": {k: torch.cat(v) for k, v in features.items()}}
        return self._forward[subject.name]

    def maps(self, subject: Subject, method: str) -> torch.Tensor | str:
        """(N, H, W) maps of the ground-truth classes, computed once per model and method for every stage; or why
        the method cannot explain this model (Grad-CAM cannot hook a TorchScript module)."""
        from kdscope.explainers import explain

        key = (subject.name, method)
        if key not in self._maps:
            try:
                self._maps[key] = explain(subject, self.x, self.y, method=method).maps_2d.detach().cpu()
            except (ValueError, TypeError, RuntimeError, AttributeError) as error:
                self._maps[key] = str(error)
        return self._maps[key]

    def cka_layers(self, subject: Subject) -> list[str]:
        chosen = self.plan.cka_layers.get(subject.name, "auto")
        if chosen != "auto":
            return list(chosen)
        if subject.twin is not None or not hookable(subject):
            return []
        return representation_layers(subject, self.x[:1])


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
