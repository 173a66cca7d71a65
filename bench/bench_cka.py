"""Streaming CKA: peak memory against N, and speed against the naive full-Gram computation on the same features.

    python bench/bench_cka.py      # writes bench/results/cka.json and prints the tables
The memory runs each start a fresh process, so that each peak resident size belongs to one N alone.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "cka.json"
TEACHER_LAYERS = ["stem", "layer1", "layer2", "layer3"]
STUDENT_LAYERS = ["features.2", "features.9", "features.16"]


def grid_run(n: int) -> dict:
    """One layer grid (teacher x student alone, spatially averaged maps) over n ProbeWorld images."""
    from common import demo_setting
    from kdscope.compare import cka_grid
    from kdscope.data import probeworld
    from kdscope.store.loading import load_subject

    _, teacher, _, _ = demo_setting()
    student = load_subject("runs/demo/kd_student_independent.pt")
    data = probeworld(n, split="test", seed=1)
    start = time.perf_counter()
    grid = cka_grid(teacher, student, data, TEACHER_LAYERS, STUDENT_LAYERS, batch_size=250)
    dataset_mb = (data.pixels.nbytes + (data.masks.nbytes if data.masks is not None else 0)) / 2**20
    return {"n": n, "seconds": time.perf_counter() - start, "grid": grid.values, "control": grid.control,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "dataset_mb": dataset_mb}


def speed(n: int = 5000, repeats: int = 3) -> dict:
    """The same features (one teacher layer, one student layer, as rows) through both computations."""
    from common import demo_setting
    from kdscope.compare.cka import CKAAccumulator, as_rows, gram_cka
    from kdscope.data import probeworld
    from kdscope.store.loading import load_subject

    _, teacher, _, _ = demo_setting()
    student = load_subject("runs/demo/kd_student_independent.pt")
    data = probeworld(n, split="test", seed=1)
    with torch.no_grad(), teacher.capture(["layer3"]) as a, student.capture(["features.16"]) as b:
        teacher.logits(data.images())
        student.logits(data.images())
    x, y = as_rows(a["layer3"]), as_rows(b["features.16"])
    times = {"streaming": [], "full_gram": []}
    values = {}
    for _ in range(repeats):
        start = time.perf_counter()
        accumulator = CKAAccumulator()
        for i in range(0, n, 250):
            accumulator.update(x[i:i + 250], y[i:i + 250])
        values["streaming"] = accumulator.value()
        times["streaming"].append(time.perf_counter() - start)
        start = time.perf_counter()
        values["full_gram"] = gram_cka(x, y)
        times["full_gram"].append(time.perf_counter() - start)
    return {"n": n, "features": [x.shape[1], y.shape[1]], "values": values,
            "seconds": {k: statistics.median(v) for k, v in times.items()},
            "speedup": statistics.median(b / a for a, b in zip(times["streaming"], times["full_gram"]))}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--grid":
        print(json.dumps(grid_run(int(sys.argv[2]))))
        return
    torch.set_num_threads(2)
    runs = []
    for n in (2000, 20000):
        output = subprocess.run([sys.executable, __file__, "--grid", str(n)], check=True, capture_output=True,
                                text=True).stdout
        runs.append(json.loads(output.strip().splitlines()[-1]))
        print(f"N={n}: peak RSS {runs[-1]['peak_rss_mb']:.0f} MB, {runs[-1]['seconds']:.1f} s", flush=True)
    timing = speed()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"grid_runs": runs, "speed": timing}, indent=2))
    print("\n| images | peak resident memory (whole process) | of which the image set | the rest | grid time |")
    print("|---|---|---|---|---|")
    for run in runs:
        print(f"| {run['n']:,} | {run['peak_rss_mb']:.0f} MB | {run['dataset_mb']:.0f} MB | "
              f"{run['peak_rss_mb'] - run['dataset_mb']:.0f} MB | {run['seconds']:.1f} s |")
    rest = [run["peak_rss_mb"] - run["dataset_mb"] for run in runs]
    print(f"\nratio 20,000 / 2,000 images: whole process {runs[1]['peak_rss_mb'] / runs[0]['peak_rss_mb']:.2f}, "
          f"without the image set {rest[1] / rest[0]:.2f}")
    print(f"\nN={timing['n']}, features {timing['features']}: streaming {timing['seconds']['streaming']:.3f} s, "
          f"full Gram {timing['seconds']['full_gram']:.3f} s, speed-up {timing['speedup']:.0f}x; values "
          f"{timing['values']['streaming']:.6f} vs {timing['values']['full_gram']:.6f}")
    print("\nteacher x student-alone debiased CKA (20,000 images; rows " + ", ".join(TEACHER_LAYERS) + "; columns "
          + ", ".join(STUDENT_LAYERS) + "), shuffled-pairing control in brackets:")
    for row, control in zip(runs[1]["grid"], runs[1]["control"]):
        print("  " + "  ".join(f"{v:.3f} [{c:+.3f}]" for v, c in zip(row, control)))


if __name__ == "__main__":
    main()
