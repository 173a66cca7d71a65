"""A full audit of the demo's five Subjects (teacher, KD student, independent student, pruned, int8) on 512 test
images: wall time per stage and its share of the total (this CPU).

    python bench/bench_audit.py      # writes bench/results/audit.json and runs/bench_audit/results.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench_attacks import compressed_models
from common import demo_setting
from kdscope import audit as audit_module
from kdscope.audit import Plan, audit

RESULTS = Path(__file__).parent / "results" / "audit.json"


def main() -> None:
    recipe, teacher, train_data, test_data = demo_setting()
    subjects = compressed_models(recipe, teacher, train_data, test_data, unrelated=False)
    seconds: dict[str, float] = {}
    for stage, function in list(audit_module.STAGE_FUNCTIONS.items()):
        def timed(context, stage=stage, function=function):
            start = time.perf_counter()
            result = function(context)
            seconds[stage] = time.perf_counter() - start
            return result
        audit_module.STAGE_FUNCTIONS[stage] = timed
    plan = Plan(images=512, stages=("predictions", "cka", "cams", "explanations", "attacks", "sanity"))
    start = time.perf_counter()
    results = audit(subjects, test_data, plan, progress=False)
    total = time.perf_counter() - start
    results.save("runs/bench_audit/results.json")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"seconds": seconds, "total": total, "images": 512,
                                   "models": [s.name for s in subjects]}, indent=1))
    print("\n| stage | wall time | share |")
    print("|---|---|---|")
    for stage, value in seconds.items():
        print(f"| {stage} | {value:.1f} s | {value / total:.0%} |")
    print(f"| total (with set-up) | {total:.1f} s | 100% |")


if __name__ == "__main__":
    main()
