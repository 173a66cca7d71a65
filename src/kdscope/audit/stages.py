"""The audit's stages: each takes the audit's shared context (Subjects, images, plan, one forward pass and one map
per model and method) and returns plain data for `Results.stages[name]`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from kdscope.audit.context import AuditContext
from kdscope.audit.probes import probes
from kdscope.compare.cams import closer_share, map_agreement
from kdscope.compare.cka import CKAAccumulator
from kdscope.compare.predictions import agreement, ece_with_interval, per_class_accuracy
from kdscope.core.stats import bootstrap_ci


def _predictions(context: AuditContext) -> dict:
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
            "control": context.independent.name if context.independent else None, "images": len(y)}


def _cka(context: AuditContext) -> dict:
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


def _unavailable(*maps: torch.Tensor | str) -> dict | None:
    reasons = [m for m in maps if isinstance(m, str)]
    return {"error": reasons[0]} if reasons else None


def _cams(context: AuditContext) -> dict:
    """Each model's maps against the teacher's, per explainer; Ojha's closer-share test on Grad-CAM."""
    result: dict = {"methods": {}}
    for method in context.plan.explainers:
        teacher = context.maps(context.teacher, method)
        result["methods"][method] = {}
        for subject in context.others:
            other = context.maps(subject, method)
            result["methods"][method][subject.name] = _unavailable(teacher, other) or map_agreement(teacher, other)
    if context.distilled is not None and context.independent is not None:
        maps = [context.maps(s, "gradcam") for s in (context.teacher, context.distilled, context.independent)]
        result["ojha"] = _unavailable(*maps) or {"distilled_closer": bootstrap_ci(closer_share(*maps))}
        result["ojha"].update(student=context.distilled.name, control=context.independent.name)
    return result


def _explanations(context: AuditContext) -> dict:
    from kdscope.explainers.sanity import localisation_of

    if context.images.masks is None:
        return {"skipped": "the data has no object masks"}
    masks = torch.from_numpy(context.images.masks)
    result = {}
    for subject in context.subjects:
        result[subject.name] = {}
        for method in context.plan.explainers:
            maps = context.maps(subject, method)
            result[subject.name][method] = _unavailable(maps) or localisation_of(maps, masks)
    return result


def _gallery(context: AuditContext) -> dict:
    """The first few audit images with every model's map per explainer (raw values: the report picks one colour
    scale per image and method, shared by the models), each model's prediction, and the object mask."""
    count = min(context.plan.gallery_images, len(context.x))
    pixels = context.images.pixels[:count].transpose(0, 2, 3, 1)
    result = {"images": pixels.tolist(), "labels": context.y[:count].tolist(),
              "class_names": list(context.images.class_names), "methods": {}, "predictions": {}}
    for subject in context.subjects:
        result["predictions"][subject.name] = context.forward(subject)["probabilities"][:count].argmax(1).tolist()
    for method in context.plan.explainers:
        per_model = {}
        for subject in context.subjects:
            maps = context.maps(subject, method)
            per_model[subject.name] = _unavailable(maps) or _significant(maps[:count].float().numpy())
        result["methods"][method] = per_model
    return result


def _significant(values: np.ndarray, digits: int = 4) -> list:
    """Nested lists of `digits` significant figures: compact JSON that keeps gradient maps of any magnitude."""
    return json.loads(np.array2string(values, separator=",", precision=digits - 1, floatmode="maxprec",
                                      threshold=values.size + 1, max_line_width=1 << 30,
                                      formatter={"float_kind": lambda v: f"{v:.{digits}g}"}))


def _attacks(context: AuditContext) -> dict:
    from kdscope.attacks import transfer_matrix
    from kdscope.attacks.transfer import robust_accuracy_curve

    matrices = []
    for config in context.plan.attacks:
        params = dict(config)
        name = params.pop("attack")
        matrix = transfer_matrix(context.subjects, context.x, context.y, attack=name, ci_seed=context.plan.seed,
                                 **params).to_dict()
        for cell in matrix["cells"]:
            del cell["masks"]
        matrices.append(matrix)
    result = {"matrices": matrices}
    first = next((dict(c) for c in context.plan.attacks if "eps" in c), None)
    if first is not None and context.plan.robust_eps:
        name = first.pop("attack")
        first.pop("eps")
        count = min(context.plan.robust_images, len(context.x))
        eps_values = [0.0, *context.plan.robust_eps]
        result["robust_curves"] = {
            "attack": name, "params": first, "images": count,
            "models": {s.name: robust_accuracy_curve(s, context.x[:count], context.y[:count], eps_values,
                                                     attack=name, ci_seed=context.plan.seed, **first)
                       for s in context.subjects}}
    return result


def _sanity(context: AuditContext) -> dict:
    from kdscope.explainers.sanity import cascading_randomization

    result = {}
    for subject in context.subjects:
        result[subject.name] = []
        for method in context.plan.sanity_methods:
            try:
                result[subject.name].append(cascading_randomization(
                    subject, context.x[:32], context.y[:32], method=method, seed=context.plan.seed).to_dict())
            except (ValueError, TypeError, RuntimeError) as error:
                result[subject.name].append({"method": method, "error": str(error)})
    return result


@dataclass(frozen=True)
class Stage:
    """One audit stage: its name in plans, results and the report, what it measures, and the function that runs it."""

    name: str
    description: str
    run: Callable[[AuditContext], dict]


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("predictions", "accuracy, calibration and agreement with the teacher", _predictions),
    Stage("cka", "representation similarity to the teacher (debiased linear CKA) with a shuffled control", _cka),
    Stage("cams", "explanation maps against the teacher's, and Ojha's closer-share test", _cams),
    Stage("explanations", "how much of each map falls on the object (needs object masks)", _explanations),
    Stage("gallery", "the first audit images with every model's maps", _gallery),
    Stage("attacks", "adversarial success and transfer between models, robust accuracy curves", _attacks),
    Stage("probes", "knowledge-transfer probes on ProbeWorld variants, paired against the control", probes),
    Stage("sanity", "cascading model-parameter randomisation of the explainers", _sanity),
)}
