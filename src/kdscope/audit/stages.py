"""The audit's stages: each takes the audit's shared context (Subjects, images, plan, one forward pass and one map
per model and method) and returns its typed record for `Results.stages[name]`."""

from __future__ import annotations

import json

import numpy as np
import torch

from kdscope.audit.context import AuditContext
from kdscope.audit.plan import STAGES, Stage
from kdscope.audit.probes import probes
from kdscope.compare.cams import MapAgreementAccumulator, OjhaAccumulator
from kdscope.compare.cka import CKAGridAccumulator, shuffled_pairing
from kdscope.compare.predictions import accuracy_with_interval, agreement, ece_with_interval, per_class_accuracy
from kdscope.results.attacks import NO_EPS_ATTACK, NO_ROBUST_EPS, AttacksStage, RobustCurves, TransferMatrix
from kdscope.results.maps import (
    NO_MASKS,
    NO_OJHA_PAIR,
    NO_SECOND_CONTROL,
    CamsStage,
    ExplanationsStage,
    GalleryStage,
    Localisation,
    MapAgreement,
    OjhaRecord,
)
from kdscope.results.predictions import Agreement, ModelPredictions, PredictionsStage
from kdscope.results.representations import CKAGridRecord, CKAStage, no_layers
from kdscope.results.sanity import SanityCheck, SanityStage
from kdscope.results.values import Unavailable


def _predictions(context: AuditContext) -> PredictionsStage:
    y = context.y
    per_model = {}
    for subject in context.subjects:
        probabilities = context.forward(subject)["probabilities"]
        classes = per_class_accuracy(probabilities, y)
        ranked = sorted(classes, key=lambda c: (classes[c], c))
        per_model[subject.name] = ModelPredictions(
            accuracy=accuracy_with_interval(probabilities, y), ece=ece_with_interval(probabilities, y),
            per_class_accuracy={str(c): value for c, value in classes.items()},
            hardest_classes=ranked[:3], easiest_classes=ranked[::-1][:3])
    teacher = context.forward(context.teacher)["probabilities"]
    versus = {s.name: Agreement(**agreement(teacher, context.forward(s)["probabilities"])) for s in context.others}
    return PredictionsStage(models=per_model, versus_teacher=versus, teacher=context.teacher.name,
                            control=context.independent.name if context.independent else None, images=len(y))


def _cka(context: AuditContext) -> CKAStage:
    """Every tapped teacher layer against every tapped layer of each other model, on all audit images at once, and
    the control: the same with the images paired by one seeded permutation of all of them."""
    teacher = context.forward(context.teacher)["features"]
    pairing = shuffled_pairing(len(context.x), context.plan.seed)
    grids: dict[str, CKAGridRecord | Unavailable] = {}
    for subject in context.others:
        features = context.forward(subject)["features"]
        if not teacher or not features:
            grids[subject.name] = Unavailable(no_layers(subject.name if teacher else context.teacher.name))
            continue
        columns = list(features.values())
        values, control = CKAGridAccumulator(len(teacher), len(features)).update(
            list(teacher.values()), columns, [b[pairing] for b in columns]).compute()
        grids[subject.name] = CKAGridRecord(rows=list(teacher), columns=list(features), reduce="mean", debiased=True,
                                            values=values, control=control)
    return CKAStage(teacher=context.teacher.name, grids=grids)


def _reason(*maps: torch.Tensor | str) -> str | None:
    """Why one of these models has no maps (the first reason), or None when all have them."""
    return next((m for m in maps if isinstance(m, str)), None)


def _cams(context: AuditContext) -> CamsStage:
    """Each model's maps against the teacher's, per explainer; Ojha's closer-share test on Grad-CAM."""
    methods: dict[str, dict[str, MapAgreement | Unavailable]] = {}
    for method in context.plan.explainers:
        teacher = context.maps(context.teacher, method)
        methods[method] = {}
        for subject in context.others:
            other = context.maps(subject, method)
            reason = _reason(teacher, other)
            methods[method][subject.name] = (Unavailable(reason) if reason else MapAgreement.from_plain(
                MapAgreementAccumulator().update(teacher, other).compute()))
    return CamsStage(methods=methods, ojha=_ojha(context))


def _ojha(context: AuditContext) -> OjhaRecord | Unavailable:
    """Ojha's test of the distilled student against its control, with a second independent student (where the
    audit has one) in the distilled student's place as the test's own control."""
    student, control, second = context.distilled, context.independent, context.second_independent
    if student is None or control is None:
        return Unavailable(NO_OJHA_PAIR)
    maps = [context.maps(s, "gradcam") for s in (context.teacher, student, control)]
    reason = _reason(*maps)
    if reason:
        return Unavailable(reason)
    second_maps = context.maps(second, "gradcam") if second is not None else NO_SECOND_CONTROL
    shares = OjhaAccumulator().update(*maps, None if isinstance(second_maps, str) else second_maps).compute()
    return OjhaRecord(distilled_closer=shares["distilled_closer"], student=student.name, control=control.name,
                      control_closer=(Unavailable(second_maps) if isinstance(second_maps, str)
                                      else shares["control_closer"]),
                      second_control=None if isinstance(second_maps, str) else second.name)


def _explanations(context: AuditContext) -> ExplanationsStage | Unavailable:
    from kdscope.explainers.sanity import localisation_of

    if context.images.masks is None:
        return Unavailable(NO_MASKS)
    masks = torch.from_numpy(context.images.masks)
    result: dict[str, dict[str, Localisation | Unavailable]] = {}
    for subject in context.subjects:
        result[subject.name] = {}
        for method in context.plan.explainers:
            maps = context.maps(subject, method)
            result[subject.name][method] = (Unavailable(maps) if isinstance(maps, str)
                                            else Localisation(**localisation_of(maps, masks)))
    return ExplanationsStage(result)


def _gallery(context: AuditContext) -> GalleryStage:
    """The first few audit images with every model's map per explainer (raw values: the report picks one colour
    scale per image and method, shared by the models), each model's prediction, and the object mask."""
    count = min(context.plan.gallery_images, len(context.x))
    methods: dict[str, dict[str, list | Unavailable]] = {}
    for method in context.plan.explainers:
        methods[method] = {}
        for subject in context.subjects:
            maps = context.maps(subject, method)
            methods[method][subject.name] = (Unavailable(maps) if isinstance(maps, str)
                                             else _significant(maps[:count].float().numpy()))
    return GalleryStage(
        images=context.images.pixels[:count].transpose(0, 2, 3, 1).tolist(), labels=context.y[:count].tolist(),
        class_names=list(context.images.class_names), methods=methods,
        predictions={s.name: context.forward(s)["probabilities"][:count].argmax(1).tolist()
                     for s in context.subjects})


def _significant(values: np.ndarray, digits: int = 4) -> list:
    """Nested lists of `digits` significant figures: compact JSON that keeps gradient maps of any magnitude."""
    return json.loads(np.array2string(values, separator=",", precision=digits - 1, floatmode="maxprec",
                                      threshold=values.size + 1, max_line_width=1 << 30,
                                      formatter={"float_kind": lambda v: f"{v:.{digits}g}"}))


def _attacks(context: AuditContext) -> AttacksStage:
    from kdscope.attacks import transfer_matrix
    from kdscope.attacks.transfer import robust_accuracy_curve

    matrices = []
    for config in context.plan.attacks:
        params = dict(config)
        name = params.pop("attack")
        matrix = transfer_matrix(context.subjects, context.x, context.y, attack=name, ci_seed=context.plan.seed,
                                 **params).to_dict()
        matrices.append(TransferMatrix.from_plain(matrix))
    first = next((dict(c) for c in context.plan.attacks if "eps" in c), None)
    if first is None or not context.plan.robust_eps:
        return AttacksStage(matrices, Unavailable(NO_EPS_ATTACK if first is None else NO_ROBUST_EPS))
    name = first.pop("attack")
    first.pop("eps")
    count = min(context.plan.robust_images, len(context.x))
    eps_values = [0.0, *context.plan.robust_eps]
    curves = {s.name: robust_accuracy_curve(s, context.x[:count], context.y[:count], eps_values, attack=name,
                                            ci_seed=context.plan.seed, **first) for s in context.subjects}
    return AttacksStage(matrices, RobustCurves.from_plain(
        {"attack": name, "params": first, "images": count, "models": curves}))


def _sanity(context: AuditContext) -> SanityStage:
    from kdscope.explainers.sanity import cascading_randomization

    result: dict[str, dict[str, SanityCheck | Unavailable]] = {}
    for subject in context.subjects:
        result[subject.name] = {}
        for method in context.plan.sanity_methods:
            try:
                result[subject.name][method] = SanityCheck.from_plain(cascading_randomization(
                    subject, context.x[:32], context.y[:32], method=method, seed=context.plan.seed).to_dict())
            except (ValueError, TypeError, RuntimeError) as error:
                result[subject.name][method] = Unavailable(str(error))
    return SanityStage(result)


STAGES.update({stage.name: stage for stage in (
    Stage("predictions", "accuracy, calibration and agreement with the teacher", _predictions),
    Stage("cka", "representation similarity to the teacher (debiased linear CKA) with a shuffled control", _cka),
    Stage("cams", "explanation maps against the teacher's, and Ojha's closer-share test", _cams),
    Stage("explanations", "how much of each map falls on the object (needs object masks)", _explanations),
    Stage("gallery", "the first audit images with every model's maps", _gallery),
    Stage("attacks", "adversarial success and transfer between models, robust accuracy curves", _attacks),
    Stage("probes", "knowledge-transfer probes on ProbeWorld variants, paired against the control", probes),
    Stage("sanity", "cascading model-parameter randomisation of the explainers", _sanity),
)})
