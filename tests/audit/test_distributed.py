"""The audit sharded across two processes (torch.distributed, gloo, one thread each) gives the same results as one
process, bootstrap intervals included, for a number of images that splits unevenly into batches and ranks; and a
lazily read ProbeWorld set audits exactly as the same set in memory."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from kdscope import Subject, zoo
from kdscope.audit import Plan, audit
from kdscope.data import probeworld

PLAN = Plan(images=23, batch_size=5, explainers=("gradcam", "gradient"), sanity_methods=("gradient",),
            attacks=({"attack": "pgd", "eps": 8 / 255, "steps": 2},), robust_eps=(4 / 255,), robust_images=7,
            gallery_images=2)
TIMINGS = ("cpu_latency_ms",)


def _subjects(teacher_state: dict, mean: list[float], std: list[float]) -> list[Subject]:
    teacher = zoo.build("resnet", 10, seed=0, width=4, blocks=1)
    teacher.load_state_dict(teacher_state)
    return [Subject(teacher, name="teacher", role="teacher", mean=mean, std=std),
            *(Subject(zoo.build("student", 10, seed=seed, width=2), name=name, role=role, mean=mean, std=std)
              for seed, name, role in ((1, "kd", "student"), (2, "alone", "independent_student")))]


def _without_timings(results_json: str) -> dict:
    plain = json.loads(results_json)
    for model in plain["models"]:
        for key in TIMINGS:
            model["profile"].pop(key)
    return plain


def _rank(rank: int, world: int, store: str, inputs: dict, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        data = probeworld(100, split="test", size=16, cache_dir=False, lazy=True)
        results = audit(_subjects(**inputs), data, PLAN, progress=False)
        Path(out, f"rank{rank}.json").write_text(results.to_json())
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_results_of_one(trained_tiny_teacher, tmp_path):
    inputs = {"teacher_state": trained_tiny_teacher.model.state_dict(),
              "mean": trained_tiny_teacher.mean.flatten().tolist(), "std": trained_tiny_teacher.std.flatten().tolist()}
    mp.spawn(_rank, args=(2, str(tmp_path / "store"), inputs, str(tmp_path)), nprocs=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = audit(_subjects(**inputs), probeworld(100, split="test", size=16, cache_dir=False), PLAN,
                       progress=False)
    finally:
        torch.set_num_threads(threads)
    expected = _without_timings(single.to_json())
    assert set(expected["stages"]) == set(PLAN.stages)
    for rank in (0, 1):
        assert _without_timings((tmp_path / f"rank{rank}.json").read_text()) == expected
