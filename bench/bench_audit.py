"""A full audit of the demo's five Subjects (teacher, KD student, independent student, pruned, int8) on 512 test
images with every stage on: wall time per stage (its work on every batch and its record; work shared within a pass,
a forward pass or a map, is paid by the first stage that asks for it) and its share of the total (this CPU), then
the report's rendering time and size.

    python bench/bench_audit.py      # writes bench/results/audit.json and runs/bench_audit/{index.html,results.json}
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from kdscope.audit import STAGES, Plan, audit
from kdscope.data import probeworld
from kdscope.demo import DemoRecipe, run_demo
from kdscope.reports import SIZE_BUDGET_BYTES, write_report
from kdscope.store.loading import load_subject
from timing import time_stages

RESULTS = Path(__file__).parent / "results" / "audit.json"
MODELS = ("teacher", "kd_student", "kd_student_independent", "teacher_pruned80", "teacher_int8.pt2")


def main() -> None:
    recipe = DemoRecipe()
    run_demo("runs/demo", progress=False, recipe=recipe)
    subjects = [load_subject(Path("runs/demo") / (name if name.endswith(".pt2") else f"{name}.pt"))
                for name in MODELS]
    test_data = probeworld(recipe.test_images, split="test", seed=recipe.seed)
    seconds = time_stages()
    start = time.perf_counter()
    results = audit(subjects, test_data, Plan(images=512, stages=tuple(STAGES)), progress=False)
    total = time.perf_counter() - start
    start = time.perf_counter()
    html = write_report(results, "runs/bench_audit", overwrite=True)
    render = time.perf_counter() - start
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"seconds": seconds, "total": total, "images": 512, "report_seconds": render,
                                   "report_bytes": html.stat().st_size,
                                   "json_bytes": html.with_name("results.json").stat().st_size,
                                   "models": [s.name for s in subjects]}, indent=1))
    print("\n| stage | wall time | share |")
    print("|---|---|---|")
    for stage, value in seconds.items():
        print(f"| {stage} | {value:.1f} s | {value / total:.0%} |")
    print(f"| total (with set-up and model profiles) | {total:.1f} s | 100% |")
    print(f"\nreport: {render:.1f} s to render and write; {html.stat().st_size / 2**20:.2f} MB "
          f"(budget {SIZE_BUDGET_BYTES / 2**20:.0f} MB); results.json "
          f"{html.with_name('results.json').stat().st_size / 2**20:.2f} MB")


if __name__ == "__main__":
    main()
