"""The audit's stages. Each measures a batch of images at a time (`measure`: the batch's per-image outcomes, or
accumulators) and makes its typed record for `Results.stages[name]` from every batch's outcomes (`finish`); the
runner streams the batches, across processes when there are several, and joins the outcomes in image order."""

from __future__ import annotations

import json

import numpy as np
import torch

from kdscope.attacks import ATTACKS, run
from kdscope.attacks.transfer import curve_from_outcomes, fooling_gap, robust_outcomes, transfer_from_predictions
from kdscope.audit.batch import Batch
from kdscope.audit.context import AuditContext
from kdscope.audit.outcomes import Outcomes
from kdscope.audit.plan import STAGES, Stage
from kdscope.audit.probes import finish_probes, measure_probes
from kdscope.compare.cams import MapAgreementAccumulator, OjhaAccumulator
from kdscope.compare.cka import CKAGridAccumulator
from kdscope.compare.predictions import agreement_outcomes, ece_interval_of, per_class_of, prediction_outcomes
from kdscope.core.stats import bootstrap_ci
from kdscope.core.subject import CONTROL_ROLES
from kdscope.explainers.similarity import pointing_game, relevance_mass
from kdscope.results.attacks import (
    NO_EPS_ATTACK,
    NO_ROBUST_EPS,
    AttacksStage,
    FoolingGap,
    RobustCurves,
    TransferMatrix,
)
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
from kdscope.results.predictions import Agreement, ControlGain, ModelPredictions, PredictionsStage
from kdscope.results.representations import CKAGridRecord, CKAStage, no_layers
from kdscope.results.sanity import SanityCheck, SanityStage
from kdscope.results.values import Unavailable

SANITY_IMAGES = 32


def _measure_predictions(context: AuditContext, batch: Batch) -> dict:
    """Per image: each model's hit and confidence, each other model's agreement with the teacher, the label."""
    parts: dict[str, np.ndarray] = {"labels": batch.y.numpy()}
    teacher = batch.forward(context.teacher)["probabilities"]
    for subject in context.subjects:
        probabilities = batch.forward(subject)["probabilities"]
        parts.update({f"{subject.name}/{k}": v for k, v in prediction_outcomes(probabilities, batch.y).items()})
        if subject is not context.teacher:
            parts.update({f"{subject.name}/versus/{k}": v
                          for k, v in agreement_outcomes(teacher, probabilities).items()})
    return parts


def _predictions(context: AuditContext, outcomes: Outcomes) -> PredictionsStage:
    labels = outcomes.array("labels")
    per_model = {}
    for subject in context.subjects:
        hits, confidence = outcomes.array(f"{subject.name}/correct"), outcomes.array(f"{subject.name}/confidence")
        classes = per_class_of(hits, labels)
        ranked = sorted(classes, key=lambda c: (classes[c], c))
        per_model[subject.name] = ModelPredictions(
            accuracy=bootstrap_ci(hits), ece=ece_interval_of(confidence, hits),
            per_class_accuracy={str(c): value for c, value in classes.items()},
            hardest_classes=ranked[:3], easiest_classes=ranked[::-1][:3])
    versus = {s.name: Agreement(**{k: bootstrap_ci(outcomes.array(f"{s.name}/versus/{k}"))
                                   for k in ("top1_agreement", "kl", "js")}) for s in context.others}
    student = context.distilled
    gains = [] if student is None else [
        ControlGain(control=s.name, role=s.role, accuracy_gain=bootstrap_ci(
            outcomes.array(f"{student.name}/correct") - outcomes.array(f"{s.name}/correct"), seed=context.plan.seed))
        for s in context.subjects if s.role in CONTROL_ROLES]
    return PredictionsStage(models=per_model, versus_teacher=versus, teacher=context.teacher.name,
                            control=context.independent.name if context.independent else None, images=len(labels),
                            student=student and student.name, gains=gains)


def _measure_cka(context: AuditContext, batch: Batch) -> dict:
    """Every tapped teacher layer against every tapped layer of each other model, and the control: the same with
    each image's teacher features paired with another model's features of the image one seeded permutation of all
    the audit images assigns it (`context.pairing`)."""
    teacher = batch.forward(context.teacher)["features"]
    parts = {}
    for subject in context.others:
        features = batch.forward(subject)["features"]
        if teacher and features:
            parts[subject.name] = CKAGridAccumulator(len(teacher), len(features)).update(
                list(teacher.values()), list(features.values()), list(batch.partner_features(subject).values()))
    return parts


def _cka(context: AuditContext, outcomes: Outcomes) -> CKAStage:
    teacher_layers = context.cka_layers(context.teacher)
    grids: dict[str, CKAGridRecord | Unavailable] = {}
    for subject in context.others:
        layers = context.cka_layers(subject)
        if not teacher_layers or not layers:
            grids[subject.name] = Unavailable(no_layers(subject.name if teacher_layers else context.teacher.name))
            continue
        values, control = outcomes.accumulator(subject.name).compute()
        grids[subject.name] = CKAGridRecord(rows=teacher_layers, columns=layers, reduce="mean", debiased=True,
                                            values=values, control=control)
    return CKAStage(teacher=context.teacher.name, grids=grids)


def _measure_cams(context: AuditContext, batch: Batch) -> dict:
    """Each model's maps against the teacher's, per explainer; Ojha's closer-share test on Grad-CAM."""
    parts: dict[str, object] = {}
    for method in context.plan.explainers:
        teacher = batch.maps(context.teacher, method)
        for subject in context.others:
            other = batch.maps(subject, method)
            if teacher is not None and other is not None:
                parts[f"{method}/{subject.name}"] = MapAgreementAccumulator().update(teacher, other)
    student, control, second = context.distilled, context.independent, context.second_independent
    if student is not None and control is not None:
        maps = [batch.maps(s, "gradcam") for s in (context.teacher, student, control)]
        second_maps = batch.maps(second, "gradcam") if second is not None else None
        if all(m is not None for m in maps):
            parts["ojha"] = OjhaAccumulator().update(*maps, second_maps)
    return parts


def _cams(context: AuditContext, outcomes: Outcomes) -> CamsStage:
    methods: dict[str, dict[str, MapAgreement | Unavailable]] = {}
    for method in context.plan.explainers:
        methods[method] = {}
        for subject in context.others:
            reason = _refusal(context, method, context.teacher, subject)
            methods[method][subject.name] = (Unavailable(reason) if reason else MapAgreement.from_plain(
                outcomes.accumulator(f"{method}/{subject.name}").compute()))
    return CamsStage(methods=methods, ojha=_ojha(context, outcomes))


def _refusal(context: AuditContext, method: str, *subjects: object) -> str | None:
    """Why one of these models has no maps (the first reason), or None when all have them."""
    return next((context.refusals[(s.name, method)] for s in subjects if (s.name, method) in context.refusals), None)


def _ojha(context: AuditContext, outcomes: Outcomes) -> OjhaRecord | Unavailable:
    """Ojha's test of the distilled student against its control, with a second independent student (where the
    audit has one) in the distilled student's place as the test's own control."""
    student, control, second = context.distilled, context.independent, context.second_independent
    if student is None or control is None:
        return Unavailable(NO_OJHA_PAIR)
    reason = _refusal(context, "gradcam", context.teacher, student, control)
    if reason:
        return Unavailable(reason)
    second_reason = NO_SECOND_CONTROL if second is None else _refusal(context, "gradcam", second)
    shares = outcomes.accumulator("ojha").compute()
    return OjhaRecord(distilled_closer=shares["distilled_closer"], student=student.name, control=control.name,
                      control_closer=Unavailable(second_reason) if second_reason else shares["control_closer"],
                      second_control=None if second_reason else second.name)


def _measure_explanations(context: AuditContext, batch: Batch) -> dict:
    """Per image, model and explainer: does the map's peak fall on the object, and how much of its mass does."""
    if batch.masks is None:
        return {}
    parts = {}
    for subject in context.subjects:
        for method in context.plan.explainers:
            maps = batch.maps(subject, method)
            if maps is not None:
                parts[f"{subject.name}/{method}/pointing_game"] = pointing_game(maps, batch.masks).astype(float)
                parts[f"{subject.name}/{method}/relevance_mass"] = relevance_mass(maps, batch.masks)
    return parts


def _explanations(context: AuditContext, outcomes: Outcomes) -> ExplanationsStage | Unavailable:
    if context.images.masks is None:
        return Unavailable(NO_MASKS)
    result: dict[str, dict[str, Localisation | Unavailable]] = {}
    for subject in context.subjects:
        result[subject.name] = {}
        for method in context.plan.explainers:
            reason = _refusal(context, method, subject)
            result[subject.name][method] = Unavailable(reason) if reason else Localisation(**{
                name: bootstrap_ci(outcomes.array(f"{subject.name}/{method}/{name}"))
                for name in ("pointing_game", "relevance_mass")})
    return ExplanationsStage(result)


def _measure_gallery(context: AuditContext, batch: Batch) -> dict:
    """The batch's images among the first `gallery_images`: pixels, labels, predictions and every map."""
    shown = batch.positions < context.plan.gallery_images
    if not shown.any():
        return {}
    parts = {"images": batch.x[shown].numpy(), "labels": batch.y[shown].numpy()}
    for subject in context.subjects:
        parts[f"predictions/{subject.name}"] = batch.forward(subject)["probabilities"][shown].argmax(1).numpy()
        for method in context.plan.explainers:
            maps = batch.maps(subject, method)
            if maps is not None:
                parts[f"{method}/{subject.name}"] = maps[shown].float().numpy()
    return parts


def _gallery(context: AuditContext, outcomes: Outcomes) -> GalleryStage:
    """The first few audit images with every model's map per explainer (raw values: the report picks one colour
    scale per image and method, shared by the models), each model's prediction, and the object mask."""
    methods: dict[str, dict[str, list | Unavailable]] = {}
    for method in context.plan.explainers:
        methods[method] = {}
        for subject in context.subjects:
            reason = _refusal(context, method, subject)
            key = f"{method}/{subject.name}"
            methods[method][subject.name] = (Unavailable(reason) if reason else
                                             _significant(outcomes.array(key)) if outcomes.has(key) else [])
    shown = outcomes.has("images")
    pixels = np.rint(outcomes.array("images") * 255).astype(np.uint8).transpose(0, 2, 3, 1) if shown else None
    return GalleryStage(
        images=pixels.tolist() if shown else [], labels=outcomes.array("labels").tolist() if shown else [],
        class_names=list(context.images.class_names), methods=methods,
        predictions={s.name: outcomes.array(f"predictions/{s.name}").tolist() if shown else []
                     for s in context.subjects})


def _significant(values: np.ndarray, digits: int = 4) -> list:
    """Nested lists of `digits` significant figures: compact JSON that keeps gradient maps of any magnitude."""
    return json.loads(np.array2string(values, separator=",", precision=digits - 1, floatmode="maxprec",
                                      threshold=values.size + 1, max_line_width=1 << 30,
                                      formatter={"float_kind": lambda v: f"{v:.{digits}g}"}))


def _attack_params(context: AuditContext, config: dict, batch: Batch) -> tuple[str, dict]:
    """The attack's name and arguments for this batch: an attack that draws random numbers gets its seed plus the
    batch's number, so each batch has its own draws and the same ones in any number of processes."""
    params = dict(config)
    name = params.pop("attack")
    if "seed" in ATTACKS[name].parameters():
        params["seed"] = int(params.get("seed", context.plan.seed)) + batch.number
    return name, params


def _measure_attacks(context: AuditContext, batch: Batch) -> dict:
    """Per image: every model's clean prediction and its prediction on the images crafted on every model, per
    attack; and, for the first `robust_images`, whether each model is still right at each robust eps."""
    parts: dict[str, np.ndarray] = {"labels": batch.y.numpy()}
    for subject in context.subjects:
        parts[f"clean/{subject.name}"] = batch.forward(subject)["probabilities"].argmax(1).numpy()
    for index, config in enumerate(context.plan.attacks):
        name, params = _attack_params(context, config, batch)
        round_to_8bit = bool(params.pop("round_to_8bit", False))
        for source in context.subjects:
            adversarial = run(source, batch.x, batch.y, attack=name, **params).adversarial.cpu()
            if round_to_8bit:
                adversarial = torch.round(adversarial * 255) / 255
            for target in context.subjects:
                parts[f"{index}/{source.name}/{target.name}"] = target.predict(adversarial).numpy()
    first = _robust_attack(context)
    attacked = batch.positions < context.plan.robust_images
    if isinstance(first, dict) and attacked.any():
        name, params = _attack_params(context, first, batch)
        params.pop("eps")
        for subject in context.subjects:
            for step, eps in enumerate((0.0, *context.plan.robust_eps)):
                parts[f"robust/{subject.name}/{step}"] = robust_outcomes(
                    subject, batch.x[attacked], batch.y[attacked], eps, attack=name, **params)
    return parts


def _robust_attack(context: AuditContext) -> dict | str:
    """The plan's first attack with an eps, which draws the robust accuracy curves, or why there are none."""
    first = next((dict(c) for c in context.plan.attacks if "eps" in c), None)
    if first is None:
        return NO_EPS_ATTACK
    return first if context.plan.robust_eps else NO_ROBUST_EPS


def _attacks(context: AuditContext, outcomes: Outcomes) -> AttacksStage:
    names = [s.name for s in context.subjects]
    labels = outcomes.array("labels")
    clean = {name: outcomes.array(f"clean/{name}") for name in names}
    matrices = []
    for index, config in enumerate(context.plan.attacks):
        params = dict(config)
        attack = params.pop("attack")
        round_to_8bit = bool(params.pop("round_to_8bit", False))
        adversarial = {source: {target: outcomes.array(f"{index}/{source}/{target}") for target in names}
                       for source in names}
        matrix = TransferMatrix.from_plain(transfer_from_predictions(
            names, labels, clean, adversarial, attack=attack, params=params, round_to_8bit=round_to_8bit,
            ci_seed=context.plan.seed).to_dict())
        matrix.gaps = _fooling_gaps(context, labels, clean, adversarial)
        matrices.append(matrix)
    first = _robust_attack(context)
    if isinstance(first, str):
        return AttacksStage(matrices, Unavailable(first))
    attack = first.pop("attack")
    first.pop("eps")
    eps_values = [0.0, *context.plan.robust_eps]
    curves = {name: curve_from_outcomes(eps_values, [outcomes.array(f"robust/{name}/{step}")
                                                     for step in range(len(eps_values))], ci_seed=context.plan.seed)
              for name in names}
    return AttacksStage(matrices, RobustCurves.from_plain(
        {"attack": attack, "params": first, "images": min(context.plan.robust_images, len(context)),
         "models": curves}))


def _fooling_gaps(context: AuditContext, labels: np.ndarray, clean: dict[str, np.ndarray],
                  adversarial: dict[str, dict[str, np.ndarray]]) -> list[FoolingGap]:
    """The distilled student against its independent control, fooled by images crafted on each other model: the
    teacher's row is Ojha et al.'s test, a model unrelated to both is its control."""
    student, control = context.distilled, context.independent
    if student is None or control is None:
        return []
    gaps = []
    for source in context.subjects:
        if source in (student, control):
            continue
        name = source.name
        difference, images = fooling_gap(
            labels, clean[name], adversarial[name][name], (clean[student.name], adversarial[name][student.name]),
            (clean[control.name], adversarial[name][control.name]), seed=context.plan.seed)
        gaps.append(FoolingGap(source=name, student=student.name, control=control.name, difference=difference,
                               images=images))
    return gaps


def _sanity(context: AuditContext, outcomes: Outcomes) -> SanityStage:
    """Cascading randomisation on the first few audit images (a fixed few: it explains them once per layer)."""
    from kdscope.explainers.sanity import cascading_randomization

    count = min(SANITY_IMAGES, len(context))
    x, y = context.read(np.arange(count)), context.y[:count]
    result: dict[str, dict[str, SanityCheck | Unavailable]] = {}
    for subject in context.subjects:
        result[subject.name] = {}
        for method in context.plan.sanity_methods:
            try:
                result[subject.name][method] = SanityCheck.from_plain(cascading_randomization(
                    subject, x, y, method=method, seed=context.plan.seed).to_dict())
            except (ValueError, TypeError, RuntimeError) as error:
                result[subject.name][method] = Unavailable(str(error))
    return SanityStage(result)


STAGES.update({stage.name: stage for stage in (
    Stage("predictions", "accuracy, calibration and agreement with the teacher", _measure_predictions, _predictions,
          "outputs"),
    Stage("cka", "representation similarity to the teacher (debiased linear CKA) with a shuffled control",
          _measure_cka, _cka, "outputs"),
    Stage("cams", "explanation maps against the teacher's, and Ojha's closer-share test", _measure_cams, _cams,
          "maps"),
    Stage("explanations", "how much of each map falls on the object (needs object masks)", _measure_explanations,
          _explanations, "maps"),
    Stage("gallery", "the first audit images with every model's maps", _measure_gallery, _gallery, "maps"),
    Stage("attacks", "adversarial success and transfer between models, robust accuracy curves", _measure_attacks,
          _attacks, "attacks"),
    Stage("probes", "knowledge-transfer probes on ProbeWorld variants, paired against the control", measure_probes,
          finish_probes, "probes"),
    Stage("sanity", "cascading model-parameter randomisation of the explainers", None, _sanity, "sanity"),
)})
