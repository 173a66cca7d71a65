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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from kdscope import __version__
from kdscope.audit_cache import read_cached_stage, write_cached_stage
from kdscope.audit_stages import STAGE_FUNCTIONS
from kdscope.compare.cka import as_rows
from kdscope.compress.lineage import cpu_latency_ms, state_dict_bytes
from kdscope.data.imageset import ImageSet
from kdscope.data.sampling import stratified_sample
from kdscope.inputs import prepare_data, reference_subject
from kdscope.plan_checks import check_attack, check_int, check_layers, check_names, check_positive_numbers
from kdscope.progress import progress_bar, progress_line
from kdscope.results import Results
from kdscope.subject import Subject

STAGES = ("predictions", "cka", "cams", "explanations", "gallery", "attacks", "probes", "sanity")


@dataclass(frozen=True)
class Plan:
    """What runs: how many images, which explainers (localisation when the data has masks; the gallery shows the
    first `gallery_images`), which attacks (each a dict of `run` arguments; the first with an eps also draws robust
    accuracy curves at `robust_eps` on `robust_images`), CKA layers per model name ('auto': up to four spatial
    layers), the sanity checks."""

    images: int = 256
    stages: tuple[str, ...] = STAGES
    explainers: tuple[str, ...] = ("gradcam", "gradient")
    attacks: tuple[dict, ...] = ({"attack": "pgd", "eps": 4 / 255, "steps": 10},)
    robust_eps: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
    robust_images: int = 128
    gallery_images: int = 6
    cka_layers: dict = field(default_factory=dict)
    sanity_methods: tuple[str, ...] = ("gradient", "gradcam")
    seed: int = 0

    def validate(self) -> None:
        """Every field's type and range, each error naming its key: checked before any stage runs."""
        from kdscope.attacks import ATTACKS
        from kdscope.explainers import METHODS

        check_int("images", self.images, 4)
        check_int("robust_images", self.robust_images, 1)
        check_int("gallery_images", self.gallery_images, 0)
        check_int("seed", self.seed, 0)
        check_names("stages", self.stages, STAGES)
        check_names("explainers", self.explainers, list(METHODS))
        check_names("sanity_methods", self.sanity_methods, list(METHODS))
        check_positive_numbers("robust_eps", self.robust_eps)
        check_layers(self.cka_layers)
        if not isinstance(self.attacks, (list, tuple)):
            raise ValueError(f"plan key 'attacks' must be a list of attack tables, got {self.attacks!r}")
        for index, config in enumerate(self.attacks):
            check_attack(index, config, ATTACKS)

    @classmethod
    def from_mapping(cls, values: dict) -> Plan:
        """A Plan from a parsed TOML/YAML table; unknown keys are an error that lists the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown plan keys {unknown}; a plan has {sorted(known)}")
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        plan = cls(**converted)
        plan.validate()
        return plan


def audit(subjects: Sequence[Subject], data: ImageSet, plan: Plan = Plan(), *, cache: str | Path | None = None,
          progress: bool = True, class_names: Sequence[str] | None = None) -> Results:
    """Run the plan. The first Subject with role 'teacher' (else the first) is the reference; a Subject with role
    'independent_student' is the control for the distilled one ('student').

    Before any stage: the data's classes are matched by name to the teacher's (or to `class_names`, the models'
    classes in output order), every model must give the same number of class scores, and the audit images are a
    seeded sample of `plan.images`, stratified by class."""
    plan.validate()
    subjects = list(subjects)
    if not subjects:
        raise ValueError("audit needs at least one Subject")
    if len({s.name for s in subjects}) != len(subjects):
        raise ValueError(f"Subjects need distinct names, got {[s.name for s in subjects]}")
    data, warnings = prepare_data(subjects, data, class_names)
    chosen = stratified_sample(data.labels, plan.images, plan.seed)
    images = data.subset(chosen)
    context = _Context(subjects, images, plan, chosen)
    sample = (f"all {len(data)} images" if len(chosen) == len(data) else
              f"{len(chosen)} of {len(data)} images, a seeded sample (seed {plan.seed}) stratified by class")
    results = Results(models=[_model_record(s, tuple(images.image_shape)) for s in subjects],
                      plan=_plain(asdict(plan)),
                      data={**images.description, "images_audited": len(images), "sample": sample,
                            "warnings": warnings})
    for stage in progress_bar(plan.stages, desc="audit", disable=not progress):
        path = Path(cache) / f"{stage}.json" if cache is not None else None
        key = context.key(stage)
        stored = read_cached_stage(path, key) if path is not None else None
        if stored is not None:
            results.stages[stage] = stored
            continue
        if progress:
            progress_line(f"audit: {stage}")
        result = _plain(STAGE_FUNCTIONS[stage](context))
        results.stages[stage] = result
        if path is not None:
            write_cached_stage(path, key, result)
    return results


class _Context:
    """The audit's shared state: Subjects, images, roles, and each model's one forward pass (computed on first use)."""

    def __init__(self, subjects: list[Subject], images: ImageSet, plan: Plan, indices: np.ndarray) -> None:
        self.subjects, self.images, self.plan, self.indices = subjects, images, plan, indices
        self.x, self.y = images.images(), images.targets()
        self.teacher = reference_subject(subjects)
        self.others = [s for s in subjects if s is not self.teacher]
        self.distilled = next((s for s in subjects if s.role == "student"), None)
        self.independent = next((s for s in subjects if s.role == "independent_student"), None)
        self._forward: dict[str, dict] = {}
        self._maps: dict[tuple[str, str], torch.Tensor] = {}

    def key(self, stage: str) -> str:
        """Everything that changes a stage's result: plan, models (weights, normalisation, input range, classes),
        and the images with their labels and class order. The device is left out: results do not depend on it."""
        fingerprint = {"stage": stage, "plan": _plain(asdict(self.plan)), "kdscope": __version__,
                       "models": [[s.name, s.role, _weights_digest(s), _listed(s.mean), _listed(s.std),
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
        return _auto_layers(subject, self.x[:1])


def hookable(subject: Subject) -> bool:
    """TorchScript modules refuse forward hooks, so they have no CKA taps."""
    return not isinstance(subject.model, torch.jit.ScriptModule)


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


def _listed(values: torch.Tensor | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values.flatten()]


def _weights_digest(subject: Subject) -> str:
    """A hash of the model's weights and buffers, so a cached stage is never reused for a retrained model."""
    digest = hashlib.sha256()
    for name, tensor in sorted(subject.model.state_dict().items()):
        if isinstance(tensor, torch.Tensor):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _model_record(subject: Subject, image_shape: tuple[int, ...]) -> dict:
    """Name, role and lineage, and a profile: size from the lineage when there is one (an int8 model's weights are
    its reference graph's), CPU latency measured now for every model so that one audit's latencies compare."""
    lineage = subject.metadata.get("lineage") or {}
    metrics = lineage.get("metrics") or subject.metadata.get("metrics") or {}
    int8 = (subject.metadata.get("compression") or {}).get("int8") or {}
    parameters = list(subject.model.parameters())
    profile = {"parameters": metrics.get("parameters", sum(p.numel() for p in parameters)),
               "nonzero_parameters": metrics.get("nonzero_parameters",
                                                 sum(int(torch.count_nonzero(p)) for p in parameters)),
               "file_bytes": metrics.get("file_bytes") or state_dict_bytes(subject.model),
               "sparsity": metrics.get("sparsity"),
               "quantized_layers": len(int8["quantized_layers"]) if int8 else None,
               "float_layers": len(int8["float_layers"]) if int8 else None,
               "cpu_latency_ms": cpu_latency_ms(subject, image_shape, batch=64, repeats=10)}
    return {"name": subject.name, "role": subject.role, "method": lineage.get("method"),
            "parent": lineage.get("parent"), "hyperparameters": lineage.get("hyperparameters"),
            "metrics": metrics, "profile": profile}


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
