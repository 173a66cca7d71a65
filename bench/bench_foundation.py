"""Foundation benchmarks: demo teacher vs student accuracy (two seeds, with intervals), training time, demo compute,
and ProbeWorld generation throughput, vectorised vs the same renderer one image at a time (measured in one run).

    python bench/bench_foundation.py            # writes bench/results/foundation.json and prints Markdown tables
"""

from __future__ import annotations

import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from kdscope.checkpoint import library_versions
from kdscope.data.probeworld import ProbeWorldSpec, _apply_variant, _render, _sample_scene, generate
from kdscope.demo import DemoRecipe, accuracy_gap, run_demo

RESULTS = Path(__file__).parent / "results" / "foundation.json"


def generation_throughput(n_vectorised: int = 20000, n_naive: int = 500) -> dict:
    """Images/s of `generate` against a per-image loop over the same renderer (same spec, same math)."""
    start = time.perf_counter()
    generate(ProbeWorldSpec(n=n_vectorised))
    vectorised = n_vectorised / (time.perf_counter() - start)
    spec = ProbeWorldSpec(n=n_naive)
    scene = _sample_scene(spec)
    _apply_variant(scene, spec)
    start = time.perf_counter()
    for i in range(n_naive):
        _render({k: v[i : i + 1] for k, v in scene.items()}, spec)
    naive = n_naive / (time.perf_counter() - start)
    return {"vectorised_images_per_s": vectorised, "per_image_images_per_s": naive, "speedup": vectorised / naive,
            "seconds_for_20000": 20000 / vectorised}


def demo_runs(seeds: tuple[int, ...] = (0, 1)) -> list[dict]:
    """Train the demo recipe from scratch once per training seed (data fixed) and time the whole demo compute."""
    rows = []
    for seed in seeds:
        base = DemoRecipe()
        models = tuple(dataclasses.replace(m, config=dataclasses.replace(m.config, seed=seed)) for m in base.models)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            summary = run_demo(out, fresh=True, progress=False, recipe=dataclasses.replace(base, models=models))
            wall = time.perf_counter() - start
        gap = accuracy_gap(summary["teacher"], summary["student_alone"])
        rows.append({
            "seed": seed,
            "demo_compute_seconds": wall,
            "gap_points": [100 * g for g in gap],
            **{name: {"accuracy": r["accuracy"], "accuracy_ci": r["accuracy_ci"], "train_seconds": r["seconds"]}
               for name, r in summary.items()},
        })
    return rows


def main() -> None:
    results = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "versions": library_versions(),
               "generation": generation_throughput(), "demo": demo_runs()}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    g = results["generation"]
    print("| ProbeWorld generation (32x32) | images/s |\n|---|---|")
    print(f"| vectorised `generate` | {g['vectorised_images_per_s']:,.0f} |")
    print(f"| same renderer, one image at a time | {g['per_image_images_per_s']:,.0f} |")
    print(f"| speed-up | {g['speedup']:.1f}x (20,000 images in {g['seconds_for_20000']:.1f} s) |\n")
    print("| seed | teacher acc [95% CI] | student alone acc [95% CI] | gap, points [95% CI] | teacher train s "
          "| student train s | demo compute s |\n|---|---|---|---|---|---|---|")
    for row in results["demo"]:
        t, s, gap = row["teacher"], row["student_alone"], row["gap_points"]
        fmt = lambda r: f"{r['accuracy']:.1%} [{r['accuracy_ci'][0]:.1%}, {r['accuracy_ci'][1]:.1%}]"  # noqa: E731
        print(f"| {row['seed']} | {fmt(t)} | {fmt(s)} | {gap[0]:.1f} [{gap[1]:.1f}, {gap[2]:.1f}] | "
              f"{t['train_seconds']:.0f} | {s['train_seconds']:.0f} | {row['demo_compute_seconds']:.0f} |")
    print(f"\n{results['machine']}; torch {results['versions']['torch']}")


if __name__ == "__main__":
    main()
