"""The audit's knowledge-transfer stage: ProbeWorld's variants of the very scenes being audited, each model's rate
with its interval, and the distilled student against its independent control, paired image by image."""

from __future__ import annotations

import numpy as np
import torch

from kdscope.audit.batch import Batch
from kdscope.audit.context import AuditContext
from kdscope.audit.outcomes import Outcomes
from kdscope.compare.probes import compare_outcomes, consensus, invariance, shape_decisions
from kdscope.core.stats import bootstrap_ci
from kdscope.data.imageset import ImageSet
from kdscope.results.probes import (
    NO_IMAGES_SCORED,
    NO_PAIR,
    NOT_PAIRED,
    NOT_PROBEWORLD,
    NOT_THE_SCENES,
    PairedOutcome,
    ProbeRecord,
    ProbesStage,
)
from kdscope.results.values import Unavailable

PROBES = {
    "colour_invariance": "prediction unchanged when the same scene is recoloured (colour_shift variant)",
    "teacher_consensus_unseen_domain": "same label as the teacher on a rendering style no model was trained on",
    "shape_bias": "share of cue-conflict decisions that follow the shape rather than the texture",
}


def measure_probes(context: AuditContext, batch: Batch) -> dict:
    """Per image of the batch: each probe's outcome per model, on ProbeWorld's variants of the batch's scenes
    (rendered for this batch only), and whether the batch's images are those scenes."""
    variants = _variants(context)
    if variants is None:
        return {}
    source = context.indices[batch.positions]
    scenes = {name: variant.subset(source) for name, variant in variants.items()}
    parts: dict[str, np.ndarray] = {"same_scenes": np.array([bool(torch.equal(scenes["clean"].images(), batch.x))])}
    for subject in context.subjects:
        parts[f"colour_invariance/{subject.name}"] = invariance(subject, scenes["clean"], scenes["colour_shift"])
        parts[f"shape_bias/{subject.name}"] = shape_decisions(subject, scenes["cue_conflict"])
        if subject is not context.teacher:
            parts[f"teacher_consensus_unseen_domain/{subject.name}"] = consensus(context.teacher, subject,
                                                                                 scenes["unseen_domain"])
    return parts


def finish_probes(context: AuditContext, outcomes: Outcomes) -> ProbesStage | Unavailable:
    if _variants(context) is None:
        return Unavailable(NOT_PROBEWORLD)
    if not outcomes.array("same_scenes").all():
        return Unavailable(NOT_THE_SCENES)
    student, control, seed = context.distilled, context.independent, context.plan.seed
    records = {}
    for probe, description in PROBES.items():
        models = context.others if probe == "teacher_consensus_unseen_domain" else context.subjects
        per_model = {s.name: outcomes.array(f"{probe}/{s.name}") for s in models}
        if probe == "shape_bias":
            paired = Unavailable(NOT_PAIRED)
        elif student is None or control is None:
            paired = Unavailable(NO_PAIR)
        else:
            paired = PairedOutcome(**compare_outcomes(per_model[student.name], per_model[control.name], seed=seed))
        records[probe] = ProbeRecord(
            description=description, paired=paired,
            models={name: bootstrap_ci(values, seed=seed) if len(values) else Unavailable(NO_IMAGES_SCORED)
                    for name, values in per_model.items()})
    return ProbesStage(images=len(context), student=student and student.name, control=control and control.name,
                       probes=records)


def _variants(context: AuditContext) -> dict[str, ImageSet] | None:
    """ProbeWorld's variants of the set the audit images were sampled from, rendered lazily; None when the
    images are not ProbeWorld's."""
    from kdscope.data import probeworld

    description = dict(context.images.description)
    if description.pop("dataset", None) != "probeworld":
        return None
    if "probe_variants" not in context.shared:
        known = {key: value for key, value in description.items() if key not in ("class_order",)}
        context.shared["probe_variants"] = {
            name: probeworld(**{**known, "variant": name}, cache_dir=False, lazy=True)
            for name in ("clean", "colour_shift", "unseen_domain", "cue_conflict")}
    return context.shared["probe_variants"]
