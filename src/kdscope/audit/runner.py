"""`audit(subjects, data, plan) -> Results`: every comparison the plan asks for, the teacher against every other
Subject, with the independent student as the control wherever a statistic has one.

Images stream in batches of `plan.batch_size`: each stage keeps per-image outcomes and accumulators, never a
tensor of every image's maps, so memory does not grow with the number of images beyond a few numbers per image.
Stages that share work run in one pass (the forward passes for predictions and CKA; the maps for the map
agreement, localisation and gallery stages). Inside an initialised torch.distributed process group (torchrun),
batch b goes to rank b % world size, rank 0 joins every batch's outcomes in image order and makes the records,
and every rank returns the same Results, equal to one process's. Every finished stage is written to
`cache/STAGE.json` atomically (by rank 0), keyed by the plan, the models and the images, so an interrupted audit
resumes where it stopped without recomputing finished stages and gives the same Results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

from kdscope.audit.batch import rounds
from kdscope.audit.cache import read_cached_stage, write_cached_stage
from kdscope.audit.context import AuditContext, plain
from kdscope.audit.distributed import from_rank_zero, gather_in_rank_order, world
from kdscope.audit.outcomes import Outcomes
from kdscope.audit.plan import Plan, resolved_batch_size
from kdscope.audit.stages import STAGES
from kdscope.core.inputs import prepare_data
from kdscope.core.memory import release_freed_memory
from kdscope.core.profile import cpu_latency_ms, parameter_counts, state_dict_bytes
from kdscope.core.progress import ImageProgress, progress_line
from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet
from kdscope.data.sampling import stratified_sample
from kdscope.results.models import ModelRecord
from kdscope.results.schema import Results, StageRecord, stage_from_plain


def audit(subjects: Sequence[Subject], data: ImageSet, plan: Plan = Plan(), *, cache: str | Path | None = None,
          progress: bool = True, class_names: Sequence[str] | None = None) -> Results:
    """Run the plan. The first Subject with role 'teacher' (else the first) is the reference; a Subject with role
    'independent_student' is the control for the distilled one ('student').

    Before any stage: the data's classes are matched by name to the teacher's (or to `class_names`, the models'
    classes in output order), every model must give the same number of class scores, and the audit images are a
    seeded sample of `plan.images`, stratified by class. Data read lazily (`load_dataset(..., lazy=True)`) is
    read batch by batch."""
    plan.validate()
    subjects = list(subjects)
    if not subjects:
        raise ValueError("audit needs at least one Subject")
    if len({s.name for s in subjects}) != len(subjects):
        raise ValueError(f"Subjects need distinct names, got {[s.name for s in subjects]}")
    data, warnings = prepare_data(subjects, data, class_names)
    chosen = stratified_sample(data.labels, plan.images, plan.seed)
    images = data.subset(chosen)
    largest = max(parameter_counts(s.model)["parameters"] for s in subjects)
    plan = replace(plan, batch_size=resolved_batch_size(plan.batch_size, images.image_shape, largest))
    context = AuditContext(subjects, images, plan, chosen)
    rank, world_size = world()
    records = _cached_records(context, cache) if rank == 0 else {}
    pending = from_rank_zero([stage for stage in plan.stages if stage not in records])
    try:
        for group in _groups(pending):
            records.update(_run_group(context, group, (rank, world_size), progress, cache))
    except KeyboardInterrupt:
        if rank == 0 and progress:
            done = [stage for stage in plan.stages if stage in records]
            where = f"; run the same audit again to resume from the cache in {cache}" if cache is not None else ""
            progress_line(f"audit interrupted: stages finished {done or 'none'}{where}")
        raise
    results = None
    if rank == 0:
        sample = (f"all {len(data)} images" if len(chosen) == len(data) else
                  f"{len(chosen)} of {len(data)} images, a seeded sample (seed {plan.seed}) stratified by class")
        results = Results(models=[_model_record(s, tuple(images.image_shape)) for s in subjects],
                          plan=plain(asdict(plan)),
                          data={**images.description, "images_audited": len(images), "sample": sample,
                                "warnings": warnings})
        results.stages.update({stage: records[stage] for stage in plan.stages})
    return from_rank_zero(results)


def _cached_records(context: AuditContext, cache: str | Path | None) -> dict[str, StageRecord]:
    """The stages a previous run of the same audit finished."""
    records = {}
    for stage in context.plan.stages if cache is not None else ():
        stored = read_cached_stage(Path(cache) / f"{stage}.json", context.key(stage), partial(stage_from_plain, stage))
        if stored is not None:
            records[stage] = stored
    return records


def _groups(stages: Sequence[str]) -> list[list[str]]:
    """The stages in passes: those of one group together, groups in the order of their first stage."""
    groups: dict[str, list[str]] = {}
    for stage in stages:
        groups.setdefault(STAGES[stage].group, []).append(stage)
    return list(groups.values())


def _run_group(context: AuditContext, group: list[str], ranks: tuple[int, int], progress: bool,
               cache: str | Path | None) -> dict[str, StageRecord]:
    """One pass over the images for the stages of a group; their records on rank 0 (nothing on the others)."""
    rank, world_size = ranks
    streaming = [STAGES[name] for name in group if STAGES[name].measure is not None]
    outcomes = {name: Outcomes() for name in group}
    if streaming:
        bar = ImageProgress(len(context), f"audit: {'+'.join(group)}", disable=not progress or rank != 0)
        for batch, images in rounds(context, rank, world_size):
            parts = None if batch is None else ({s.name: s.measure(context, batch) for s in streaming},
                                                dict(context.refusals))
            for item in gather_in_rank_order(parts) or ():
                if item is not None:
                    for name, batch_parts in item[0].items():
                        outcomes[name].add(batch_parts)
                    for key, reason in item[1].items():
                        context.refusals.setdefault(key, reason)
            del batch, parts
            release_freed_memory()
            bar.update(images)
        bar.close()
    elif progress and rank == 0:
        progress_line(f"audit: {'+'.join(group)}")
    records = {}
    if rank == 0:
        for name in group:
            # The record kept is the one its JSON reads back as (Python numbers, lists), so that a fresh stage and
            # a cached one are the same record.
            result = plain(STAGES[name].finish(context, outcomes[name]).to_plain())
            records[name] = stage_from_plain(name, result)
            if cache is not None:
                write_cached_stage(Path(cache) / f"{name}.json", context.key(name), result)
    return records


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
