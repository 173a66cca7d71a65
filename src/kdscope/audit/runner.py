"""`audit(subjects, data, plan) -> Results`: every comparison the plan asks for, the teacher against every other
Subject, with the independent student as the control wherever a statistic has one.

Each model's forward pass over the audit images (probabilities and the feature taps CKA needs) runs once and is
shared by the stages that use it, and so does each model's map per explainer (Grad-CAM serves both the agreement
and the localisation stages). Every finished stage is written to `cache/STAGE.json` atomically, keyed by the
plan, the models and the images, so an interrupted audit resumes where it stopped without recomputing finished
stages and gives the same Results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path

from kdscope.audit.cache import read_cached_stage, write_cached_stage
from kdscope.audit.context import AuditContext, plain
from kdscope.audit.plan import Plan
from kdscope.audit.stages import STAGES
from kdscope.core.inputs import prepare_data
from kdscope.core.profile import cpu_latency_ms, parameter_counts, state_dict_bytes
from kdscope.core.progress import progress_bar, progress_line
from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet
from kdscope.data.sampling import stratified_sample
from kdscope.results.models import ModelRecord
from kdscope.results.schema import Results, stage_from_plain


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
    context = AuditContext(subjects, images, plan, chosen)
    sample = (f"all {len(data)} images" if len(chosen) == len(data) else
              f"{len(chosen)} of {len(data)} images, a seeded sample (seed {plan.seed}) stratified by class")
    results = Results(models=[_model_record(s, tuple(images.image_shape)) for s in subjects],
                      plan=plain(asdict(plan)),
                      data={**images.description, "images_audited": len(images), "sample": sample,
                            "warnings": warnings})
    for stage in progress_bar(plan.stages, desc="audit", disable=not progress):
        path = Path(cache) / f"{stage}.json" if cache is not None else None
        key = context.key(stage)
        stored = read_cached_stage(path, key, partial(stage_from_plain, stage)) if path is not None else None
        if stored is not None:
            results.stages[stage] = stored
            continue
        if progress:
            progress_line(f"audit: {stage}")
        # The record kept is the one its JSON reads back as (Python numbers, lists), so that a fresh stage and a
        # cached one are the same record.
        result = plain(STAGES[stage].run(context).to_plain())
        results.stages[stage] = stage_from_plain(stage, result)
        if path is not None:
            write_cached_stage(path, key, result)
    return results


def _model_record(subject: Subject, image_shape: tuple[int, ...]) -> ModelRecord:
    """Name, role and lineage, and a profile: size from the lineage when there is one (an int8 model's weights are
    its reference graph's), CPU latency measured now for every model so that one audit's latencies compare."""
    lineage = subject.metadata.get("lineage") or {}
    metrics = lineage.get("metrics") or subject.metadata.get("metrics") or {}
    int8 = (subject.metadata.get("compression") or {}).get("int8") or {}
    counts = parameter_counts(subject.model)
    profile = {"parameters": metrics.get("parameters", counts["parameters"]),
               "nonzero_parameters": metrics.get("nonzero_parameters", counts["nonzero_parameters"]),
               "file_bytes": metrics.get("file_bytes") or state_dict_bytes(subject.model),
               "sparsity": metrics.get("sparsity"),
               "quantized_layers": len(int8["quantized_layers"]) if int8 else None,
               "float_layers": len(int8["float_layers"]) if int8 else None,
               "cpu_latency_ms": cpu_latency_ms(subject, image_shape, batch=64, repeats=10)}
    return ModelRecord.from_plain(plain({
        "name": subject.name, "role": subject.role, "method": lineage.get("method"), "parent": lineage.get("parent"),
        "hyperparameters": lineage.get("hyperparameters"), "metrics": metrics, "profile": profile}))
