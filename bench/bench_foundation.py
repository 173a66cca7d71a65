"""Foundation benchmarks: demo teacher vs student accuracy (two seeds, with intervals), training time, demo compute,
ProbeWorld generation throughput (vectorised vs the same renderer one image at a time), and training throughput in
channels-last vs the default memory layout; each comparison is measured in one run.

    python bench/bench_foundation.py                    # all sections; writes bench/results/foundation.json
    python bench/bench_foundation.py --only layout      # one section (generation, layout, demo); others kept
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from kdscope import zoo
from kdscope.core.checkpoint import library_versions
from kdscope.data.probeworld import ProbeWorldSpec, _apply_variant, _render, _sample_scene, generate
from kdscope.demo import DemoRecipe, accuracy_gap, train_models

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


def layout_throughput(steps: int = 15, batch_size: int = 128) -> dict:
    """Teacher training steps/s in the default (NCHW) layout and in channels-last, alternating to share the noise."""
    x = torch.rand(batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (batch_size,))
    rates: dict[str, list[float]] = {"default": [], "channels_last": []}
    for _ in range(2):
        for layout, memory_format in (("default", torch.contiguous_format), ("channels_last", torch.channels_last)):
            model = zoo.build("resnet", 10, seed=0, width=16, blocks=1).to(memory_format=memory_format)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            batch = x.contiguous(memory_format=memory_format)
            for step in range(steps + 3):
                if step == 3:
                    start = time.perf_counter()
                loss = torch.nn.functional.cross_entropy(model(batch), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            rates[layout].append(steps * batch_size / (time.perf_counter() - start))
    best = {layout: max(values) for layout, values in rates.items()}
    return {"default_images_per_s": best["default"], "channels_last_images_per_s": best["channels_last"],
            "speedup": best["channels_last"] / best["default"]}


def demo_runs(seeds: tuple[int, ...] = (0, 1)) -> list[dict]:
    """Train the demo recipe from scratch once per training seed (data fixed) and time the whole demo compute."""
    rows = []
    for seed in seeds:
        base = DemoRecipe()
        models = tuple(dataclasses.replace(m, config=dataclasses.replace(m.config, seed=seed)) for m in base.models)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            summary = train_models(out, fresh=True, progress=False, recipe=dataclasses.replace(base, models=models))
            wall = time.perf_counter() - start
        gap = accuracy_gap(summary["teacher"], summary["teacher_star"])
        rows.append({
            "seed": seed,
            "demo_compute_seconds": wall,
            "gap_points": [100 * g for g in gap],
            **{name: {"accuracy": r["accuracy"], "accuracy_ci": r["accuracy_ci"], "train_seconds": r["seconds"]}
               for name, r in summary.items()},
        })
    return rows


SECTIONS = {"generation": generation_throughput, "layout": layout_throughput, "demo": demo_runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run just these sections")
    chosen = parser.parse_args().only or list(SECTIONS)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update({"machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
                    "versions": library_versions()})
    for name in chosen:
        results[name] = SECTIONS[name]()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print_tables(results)


def print_tables(results: dict) -> None:
    if "generation" in results:
        g = results["generation"]
        print("| ProbeWorld generation (32x32) | images/s |\n|---|---|")
        print(f"| vectorised `generate` | {g['vectorised_images_per_s']:,.0f} |")
        print(f"| same renderer, one image at a time | {g['per_image_images_per_s']:,.0f} |")
        print(f"| speed-up | {g['speedup']:.1f}x (20,000 images in {g['seconds_for_20000']:.1f} s) |\n")
    if "layout" in results:
        t = results["layout"]
        print("| teacher training, batch 128 | images/s |\n|---|---|")
        print(f"| default layout (NCHW) | {t['default_images_per_s']:,.0f} |")
        print(f"| channels-last (what `train` uses) | {t['channels_last_images_per_s']:,.0f} |")
        print(f"| speed-up | {t['speedup']:.2f}x |\n")
    if "demo" in results:
        print("| seed | teacher acc [95% CI] | T* (no hue jitter) acc [95% CI] | gap, points [95% CI] "
              "| teacher train s | T* train s | demo compute s |\n|---|---|---|---|---|---|---|")
        for row in results["demo"]:
            t, s, gap = row["teacher"], row["teacher_star"], row["gap_points"]
            fmt = lambda r: f"{r['accuracy']:.1%} [{r['accuracy_ci'][0]:.1%}, {r['accuracy_ci'][1]:.1%}]"  # noqa: E731
            print(f"| {row['seed']} | {fmt(t)} | {fmt(s)} | {gap[0]:.1f} [{gap[1]:.1f}, {gap[2]:.1f}] | "
                  f"{t['train_seconds']:.0f} | {s['train_seconds']:.0f} | {row['demo_compute_seconds']:.0f} |")
    print(f"\n{results['machine']}; torch {results['versions']['torch']}")


if __name__ == "__main__":
    main()
