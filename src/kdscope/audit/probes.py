"""The audit's knowledge-transfer stage: ProbeWorld's variants of the very scenes being audited, each model's rate
with its interval, and the distilled student against its independent control, paired image by image."""

from __future__ import annotations

import numpy as np

from kdscope.audit.context import AuditContext
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


def probes(context: AuditContext) -> ProbesStage | Unavailable:
    description = dict(context.images.description)
    if description.pop("dataset", None) != "probeworld":
        return Unavailable(NOT_PROBEWORLD)
    variants = {name: _variant(description, name, context.indices) for name in
                ("clean", "colour_shift", "unseen_domain", "cue_conflict")}
    if not np.array_equal(variants["clean"].pixels, context.images.pixels):
        return Unavailable(NOT_THE_SCENES)
    outcomes = {
        "colour_invariance": {s.name: invariance(s, variants["clean"], variants["colour_shift"])
                              for s in context.subjects},
        "teacher_consensus_unseen_domain": {s.name: consensus(context.teacher, s, variants["unseen_domain"])
                                            for s in context.others},
        "shape_bias": {s.name: shape_decisions(s, variants["cue_conflict"]) for s in context.subjects},
    }
    student, control, seed = context.distilled, context.independent, context.plan.seed
    records = {}
    for probe, per_model in outcomes.items():
        if probe == "shape_bias":
            paired = Unavailable(NOT_PAIRED)
        elif student is None or control is None:
            paired = Unavailable(NO_PAIR)
        else:
            paired = PairedOutcome(**compare_outcomes(per_model[student.name], per_model[control.name], seed=seed))
        records[probe] = ProbeRecord(
            description=PROBES[probe], paired=paired,
            models={name: bootstrap_ci(values, seed=seed) if len(values) else Unavailable(NO_IMAGES_SCORED)
                    for name, values in per_model.items()})
    return ProbesStage(images=len(context.x), student=student and student.name, control=control and control.name,
                       probes=records)


def _variant(description: dict, variant: str, indices: np.ndarray) -> ImageSet:
    """The same scenes (the audit's sample of the set its description names) rendered as `variant`."""
    from kdscope.data import probeworld

    known = {key: value for key, value in description.items() if key not in ("class_order",)}
    return probeworld(**{**known, "variant": variant}).subset(indices)
