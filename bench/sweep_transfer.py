"""Does distillation transfer adversarial vulnerability (Ojha et al. 2023)? Several seeds of the KD student and its
independent control, each with an unrelated model as the control source; meant for a GPU (no int8 here).

    python bench/sweep_transfer.py --device cuda --seeds 0 1 2    # writes bench/results/transfer_sweep.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from bench_attacks import _paired_gap
from common import demo_setting
from kdscope import Subject, zoo
from kdscope.attacks import transfer_matrix
from kdscope.compress import distill
from kdscope.core.checkpoint import library_versions
from kdscope.train import train

RESULTS = Path(__file__).parent / "results" / "transfer_sweep.json"


def one_seed(seed: int, device: str, eps: float) -> dict:
    recipe, teacher, train_data, test_data = demo_setting(device)
    spec = recipe.student
    config = dataclasses.replace(spec.config, seed=seed)
    student = zoo.build(spec.arch, 10, seed=seed, **spec.arch_kwargs).to(device)
    kd = distill(teacher, train_data, student=student, train=config, eval_data=test_data, progress=False)
    kd_student, independent = kd.subject, kd.control.subject
    independent.name = "independent"
    mean, std = train_data.channel_stats()
    vgg = zoo.build("vgg", 10, seed=100 + seed, width=16).to(device)
    train(vgg, train_data, dataclasses.replace(config, seed=100 + seed), mean=mean, std=std, progress=False)
    unrelated = Subject(vgg, name="unrelated_vgg", mean=mean, std=std)
    x, y = test_data.images(), test_data.targets()
    result = transfer_matrix([teacher, kd_student, independent, unrelated], x, y, attack="pgd", eps=eps,
                             steps=10, seed=seed)
    row = {"seed": seed, "gaps": {s: _paired_gap(result, s) for s in ("teacher", "unrelated_vgg")},
           "conditional": {f"{c.source}->{c.target}": c.conditional for c in result.cells},
           "accuracy": {s.name: s.evaluate(test_data)["accuracy"] for s in (teacher, kd_student, independent,
                                                                           unrelated)}}
    print(json.dumps({k: row[k] for k in ("seed", "gaps", "accuracy")}), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eps", type=float, default=4 / 255)
    args = parser.parse_args()
    rows = [one_seed(seed, args.device, args.eps) for seed in args.seeds]
    summary = {source: {"mean_points": 100 * statistics.mean(r["gaps"][source]["estimate"] for r in rows),
                        "std_points": 100 * statistics.stdev(r["gaps"][source]["estimate"] for r in rows)
                        if len(rows) > 1 else 0.0}
               for source in ("teacher", "unrelated_vgg")}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows, "summary": summary, "eps": args.eps,
                                   "versions": library_versions()}, indent=2))
    print("\n| seed | teacher -> KD minus teacher -> independent | unrelated -> KD minus unrelated -> independent |")
    print("|---|---|---|")
    for r in rows:
        cells = [r["gaps"][s] for s in ("teacher", "unrelated_vgg")]
        print(f"| {r['seed']} | " + " | ".join(
            f"{100 * g['estimate']:+.1f} [{100 * g['ci95'][0]:+.1f}, {100 * g['ci95'][1]:+.1f}]" for g in cells) + " |")
    print("| mean ± std | " + " | ".join(f"{summary[s]['mean_points']:+.1f} ± {summary[s]['std_points']:.1f}"
                                        for s in ("teacher", "unrelated_vgg")) + " |")


if __name__ == "__main__":
    main()
