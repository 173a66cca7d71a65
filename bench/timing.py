"""Timing for the benches: models timed in turn, so that a noisy shared machine slows all of them alike."""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from kdscope import Subject
from kdscope.audit import STAGES


@torch.no_grad()
def interleaved_ms(subjects: dict[str, Subject], shape: tuple[int, ...], batch: int, repeats: int = 40) -> dict:
    """Median forward time per model, the models timed in turn within each repeat so that load on this shared
    machine hits all of them alike. `ratios[a][b]` is the median of the per-repeat ratios a/b."""
    x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0))
    times = {name: [] for name in subjects}
    for subject in subjects.values():
        for _ in range(3):
            subject.logits(x)
    for _ in range(repeats):
        for name, subject in subjects.items():
            start = time.perf_counter()
            subject.logits(x)
            times[name].append(1000 * (time.perf_counter() - start))
    result: dict = {name: statistics.median(values) for name, values in times.items()}
    result["ratios"] = {a: {b: statistics.median(x / y for x, y in zip(times[a], times[b])) for b in subjects}
                        for a in subjects}
    return result


def cpu_model() -> str:
    """The CPU's model name, for the tables: timings only compare on the same CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_stages() -> dict[str, float]:
    """Wrap every registered stage's steps with a clock (work shared within a pass is paid by the first stage that
    asks for it); returns the seconds per stage."""
    seconds = dict.fromkeys(STAGES, 0.0)

    def timed(name: str, function):
        def run(*args):
            start = time.perf_counter()
            result = function(*args)
            seconds[name] += time.perf_counter() - start
            return result
        return run

    for name, stage in list(STAGES.items()):
        STAGES[name] = replace(stage, finish=timed(name, stage.finish),
                               measure=stage.measure and timed(name, stage.measure))
    return seconds
