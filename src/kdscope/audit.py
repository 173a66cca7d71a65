"""`audit(subjects, data, plan) -> Results`: every comparison the plan asks for, the teacher against every other
Subject, with the independent student as the control wherever a statistic has one.

Each model's forward pass over the audit images (probabilities and the feature taps CKA needs) runs once and is
shared by the stages that use it, and so does each model's map per explainer (Grad-CAM serves both the agreement
and the localisation stages). Every finished stage is written to `cache/STAGE.json` atomically, keyed by the
plan, the models and the images, so an interrupted audit resumes where it stopped without recomputing finished
stages and gives the same Results.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from kdscope.checkpoint import atomic_write
from kdscope.compare.cams import closer_share, map_agreement
from kdscope.compare.cka import CKAAccumulator, as_rows
from kdscope.compare.predictions import agreement, ece_with_interval, per_class_accuracy
from kdscope.data.imageset import ImageSet
from kdscope.results import Results
from kdscope.stats import bootstrap_ci
from kdscope.subject import Subject

STAGES = ("predictions", "cka", "cams", "explanations", "attacks", "sanity")


@dataclass(frozen=True)
class Plan:
    """What runs: how many images, which explainers (localisation when the data has masks), which attacks (each a
    dict of `run` arguments), CKA layers per model name ('auto': up to four spatial layers), the sanity checks."""

    images: int = 256
    stages: tuple[str, ...] = ("predictions", "cka", "cams", "explanations", "attacks")
    explainers: tuple[str, ...] = ("gradcam", "gradient")
    attacks: tuple[dict, ...] = ({"attack": "pgd", "eps": 4 / 255, "steps": 10},)
    cka_layers: dict = field(default_factory=dict)
    sanity_methods: tuple[str, ...] = ("gradient", "gradcam")
    seed: int = 0

    def validate(self) -> None:
        unknown = [stage for stage in self.stages if stage not in STAGES]
        if unknown:
            raise ValueError(f"unknown audit stages {unknown}; choose from {STAGES}")
        if self.images < 4:
            raise ValueError(f"an audit needs at least 4 images, got {self.images}")


def audit(subjects: Sequence[Subject], data: ImageSet, plan: Plan = Plan(), *, cache: str | Path | None = None,
          progress: bool = True) -> Results:
    """Run the plan. The first Subject with role 'teacher' (else the first) is the reference; a Subject with role
    'independent_student' is the control for the distilled one ('student')."""
    plan.validate()
    if len({s.name for s in subjects}) != len(subjects):
        raise ValueError(f"Subjects need distinct names, got {[s.name for s in subjects]}")
    images = data.subset(range(min(plan.images, len(data))))
    context = _Context(list(subjects), images, plan)
    results = Results(models=[_model_record(s) for s in subjects], plan=_plain(asdict(plan)),
                      data=images.description)
    for stage in tqdm(plan.stages, desc="audit", disable=not progress):
        path = Path(cache) / f"{stage}.json" if cache is not None else None
        key = context.key(stage)
        if path is not None and path.exists():
            stored = json.loads(path.read_text())
            if stored.get("key") == key:
                results.stages[stage] = stored["result"]
                continue
        if progress:
            tqdm.write(f"audit: {stage}")
        result = _plain(STAGE_FUNCTIONS[stage](context))
        results.stages[stage] = result
        if path is not None:
            record = json.dumps({"key": key, "result": result}).encode()
            atomic_write(path, lambda f, r=record: f.write(r))
    return results


class _Context:
    """The audit's shared state: Subjects, images, roles, and each model's one forward pass (computed on first use)."""

    def __init__(self, subjects: list[Subject], images: ImageSet, plan: Plan) -> None:
        self.subjects, self.images, self.plan = subjects, images, plan
        self.x, self.y = images.images(), images.targets()
        self.teacher = next((s for s in subjects if s.role == "teacher"), subjects[0])
        self.others = [s for s in subjects if s is not self.teacher]
        self.distilled = next((s for s in subjects if s.role == "student"), None)
        self.independent = next((s for s in subjects if s.role == "independent_student"), None)
        self._forward: dict[str, dict] = {}
        self._maps: dict[tuple[str, str], torch.Tensor] = {}

    def key(self, stage: str) -> str:
        fingerprint = {"stage": stage, "plan": _plain(asdict(self.plan)), "models": [s.name for s in self.subjects],
                       "images": hashlib.sha256(self.images.pixels.tobytes()).hexdigest()}
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

    def maps(self, subject: Subject, method: str) -> torch.Tensor:
        """(N, H, W) maps of the ground-truth classes, computed once per model and method for every stage."""
        from kdscope.explainers import explain

        key = (subject.name, method)
        if key not in self._maps:
            self._maps[key] = explain(subject, self.x, self.y, method=method).maps_2d.detach().cpu()
        return self._maps[key]

    def cka_layers(self, subject: Subject) -> list[str]:
        chosen = self.plan.cka_layers.get(subject.name, "auto")
        if chosen != "auto":
            return list(chosen)
        if subject.twin is not None:
            return []
        return _auto_layers(subject, self.x[:1])


def _auto_layers(subject: Subject, x: torch.Tensor, count: int = 4) -> list[str]:
    """Up to `count` evenly spaced modules with spatial outputs, at the outermost level that has more than one
    (a ResNet's stages; a plain CNN's layers inside its single `features` block)."""
    shapes: dict[str, tuple] = {}
    handles = [module.register_forward_hook(
        lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(getattr(out, "shape", ()))))
        for name, module in subject.model.named_modules() if name]
    try:
        with torch.no_grad():
            subject.logits(x)
    finally:
        for handle in handles:
            handle.remove()
    modules = dict(subject.model.named_modules())
    prefix, spatial = "", []
    while True:
        children = [f"{prefix}{name}" for name, _ in modules[prefix.rstrip(".")].named_children()] if prefix \
            else [name for name, _ in subject.model.named_children()]
        spatial = [name for name in children if len(shapes.get(name, ())) == 4 and
                   shapes[name][2] * shapes[name][3] > 1]
        if len(spatial) != 1 or not list(modules[spatial[0]].children()):
            break
        prefix = f"{spatial[0]}."
    if len(spatial) <= count:
        return spatial
    return [spatial[round(i * (len(spatial) - 1) / (count - 1))] for i in range(count)]


def _predictions(context: _Context) -> dict:
    y = context.y
    per_model = {}
    for subject in context.subjects:
        probabilities = context.forward(subject)["probabilities"]
        correct = (probabilities.argmax(1) == y).double().numpy()
        classes = per_class_accuracy(probabilities, y)
        ranked = sorted(classes, key=lambda c: (classes[c], c))
        per_model[subject.name] = {"accuracy": bootstrap_ci(correct),
                                   "ece": ece_with_interval(probabilities, y),
                                   "per_class_accuracy": classes,
                                   "hardest_classes": ranked[:3], "easiest_classes": ranked[::-1][:3]}
    teacher = context.forward(context.teacher)["probabilities"]
    versus = {s.name: agreement(teacher, context.forward(s)["probabilities"]) for s in context.others}
    return {"models": per_model, "versus_teacher": versus, "teacher": context.teacher.name,
            "control": context.independent.name if context.independent else None}


def _cka(context: _Context) -> dict:
    teacher = context.forward(context.teacher)["features"]
    grids = {}
    for subject in context.others:
        features = context.forward(subject)["features"]
        if not teacher or not features:
            continue
        generator = torch.Generator().manual_seed(context.plan.seed)
        permutation = torch.randperm(len(context.x), generator=generator)
        grids[subject.name] = {
            "rows": list(teacher), "columns": list(features), "reduce": "mean", "debiased": True,
            "values": [[CKAAccumulator().update(a, b).value() for b in features.values()] for a in teacher.values()],
            "control": [[CKAAccumulator().update(a, b[permutation]).value() for b in features.values()]
                        for a in teacher.values()]}
    return {"teacher": context.teacher.name, "grids": grids}


def _cams(context: _Context) -> dict:
    teacher = context.maps(context.teacher, "gradcam")
    result = {"agreement": {s.name: map_agreement(teacher, context.maps(s, "gradcam")) for s in context.others}}
    if context.distilled is not None and context.independent is not None:
        shares = closer_share(teacher, context.maps(context.distilled, "gradcam"),
                              context.maps(context.independent, "gradcam"))
        result["ojha"] = {"distilled_closer": bootstrap_ci(shares)}
    return result


def _explanations(context: _Context) -> dict:
    from kdscope.explainers.sanity import localisation_of

    if context.images.masks is None:
        return {"skipped": "the data has no object masks"}
    masks = torch.from_numpy(context.images.masks)
    result = {}
    for subject in context.subjects:
        result[subject.name] = {}
        for method in context.plan.explainers:
            try:
                result[subject.name][method] = localisation_of(context.maps(subject, method), masks)
            except (ValueError, TypeError) as error:
                result[subject.name][method] = {"error": str(error)}
    return result


def _attacks(context: _Context) -> dict:
    from kdscope.attacks import transfer_matrix

    matrices = []
    for config in context.plan.attacks:
        params = dict(config)
        name = params.pop("attack")
        matrix = transfer_matrix(context.subjects, context.x, context.y, attack=name, ci_seed=context.plan.seed,
                                 **params).to_dict()
        for cell in matrix["cells"]:
            del cell["masks"]
        matrices.append(matrix)
    return {"matrices": matrices}


def _sanity(context: _Context) -> dict:
    from kdscope.explainers.sanity import cascading_randomization

    return {s.name: [cascading_randomization(s, context.x[:32], context.y[:32], method=method,
                                             seed=context.plan.seed).to_dict()
                     for method in context.plan.sanity_methods] for s in context.subjects}


STAGE_FUNCTIONS: dict[str, Callable[[_Context], dict]] = {
    "predictions": _predictions, "cka": _cka, "cams": _cams, "explanations": _explanations, "attacks": _attacks,
    "sanity": _sanity,
}


def _model_record(subject: Subject) -> dict:
    lineage = subject.metadata.get("lineage") or {}
    return {"name": subject.name, "role": subject.role, "method": lineage.get("method"),
            "parent": lineage.get("parent"), "metrics": lineage.get("metrics") or subject.metadata.get("metrics")}


def _plain(value: object) -> object:
    """JSON-ready copy: tuples become lists, numpy and torch scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value
