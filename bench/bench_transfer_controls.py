"""Positive controls (issue 17): in ProbeWorld's structured setting, does distillation measurably transfer, and does
each kdscope statistic see it against its control? Per seed: a colour-invariant teacher T and a non-invariant T*
(no hue jitter) trained on all labelled training images; students with 10% of the labels (noisy as configured) and
an unlabelled transfer split: the KD student and its controls (independent, pseudo-label, random teacher, KD of T*),
plus a second independent student (the Ind-vs-Ind control of Ojha's CAM statistic); then one audit of them all.

    python bench/bench_transfer_controls.py --seeds 0 1 2 [--device cuda] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from kdscope import zoo
from kdscope.audit import Plan, audit
from kdscope.compress import DistillConfig, distill
from kdscope.compress.controls import matched_schedule
from kdscope.core.subject import Subject
from kdscope.data.augment import Augment
from kdscope.demo import DemoRecipe
from kdscope.results.representations import CKAGridRecord
from kdscope.train import TrainConfig, train
from timing import cpu_model

STAGES = ("predictions", "cka", "cams", "attacks", "probes")


def setting(seed: int, args: argparse.Namespace) -> dict:
    """The demo's data (super-classes, a labelled fraction, a transfer split) at this bench's sizes and seed."""
    return DemoRecipe(train_images=args.train_images, labelled_fraction=args.labelled_fraction,
                      label_noise=args.label_noise, transfer_images=args.transfer_images,
                      test_images=args.test_images, seed=seed).data()


def teacher(data: dict, seed: int, invariant: bool, args: argparse.Namespace) -> Subject:
    augment = Augment.colour_jitter() if invariant else Augment(crop_padding=2, flip=True)
    config = TrainConfig(epochs=args.teacher_epochs, lr=0.05, augment=augment, seed=seed)
    model = zoo.build("resnet", 10, seed=seed, width=16, blocks=1).to(args.device)
    mean, std = data["train"].channel_stats()
    train(model, data["train"], config, mean=mean, std=std, progress=False)
    return Subject(model, name="teacher" if invariant else "teacher_star", role="teacher" if invariant else "other",
                   mean=mean, std=std, class_names=data["test"].class_names)


def one_seed(seed: int, args: argparse.Namespace) -> dict:
    data = setting(seed, args)
    began = time.perf_counter()
    invariant, star = teacher(data, seed, True, args), teacher(data, seed, False, args)
    schedule = TrainConfig(epochs=args.student_epochs, lr=0.05, augment=Augment(crop_padding=2, flip=True), seed=seed)
    student = zoo.build("student", 10, seed=seed, width=args.width, blocks=2).to(args.device)
    result = distill(invariant, data["labelled"], DistillConfig(), student=student, train=schedule,
                     transfer=data["transfer"], other_teacher=star, progress=False,
                     controls=("independent", "pseudo_label", "random_teacher", "other_teacher"))
    second = zoo.build("student", 10, seed=seed + 1000, width=args.width, blocks=2).to(args.device)
    taught = len(data["labelled"]) + len(data["transfer"])
    mean, std = data["labelled"].channel_stats()
    train(second, data["labelled"], matched_schedule(schedule, taught, len(data["labelled"])), mean=mean, std=std,
          progress=False)
    second_subject = Subject(second, name="independent_b", role="independent_student", mean=mean, std=std,
                             class_names=data["test"].class_names)
    trained = time.perf_counter() - began
    subjects = [invariant, result.subject, *(c.subject for c in result.controls), second_subject, star]
    plan = Plan(images=args.audit_images, stages=STAGES, robust_images=1, robust_eps=(8 / 255,), seed=seed)
    results = audit(subjects, data["test"], plan, progress=False)
    return {"seed": seed, "train_seconds": trained, "audit_seconds": time.perf_counter() - began - trained,
            **figures(results, result)}


def figures(results: object, result: object) -> dict:
    """The issue's figures from one audit: gains, Ojha, fooling gaps, invariance, CKA (each an interval)."""
    predictions = results.record("predictions")
    cams, attacks, probes, cka = (results.record(name) for name in ("cams", "attacks", "probes", "cka"))
    names = {c.subject.role: c.subject.name for c in result.controls}
    invariance = probes.probes["colour_invariance"].models
    grids = {name: grid for name, grid in cka.grids.items() if isinstance(grid, CKAGridRecord)}
    return {
        "accuracy": {name: list(predictions.accuracy(name)) for name in predictions.models},
        "gains": {gain.role: list(gain.accuracy_gain) for gain in predictions.gains},
        "ojha": {"distilled_closer": list(cams.ojha.distilled_closer),
                 "control_closer": list(cams.ojha.control_closer)},
        "fooling_gaps": {gap.source: [*gap.difference, gap.images] for gap in attacks.matrices[0].gaps},
        "colour_invariance": {name: list(value) for name, value in invariance.items()},
        "cka_last_layers": {name: [record.last_layers(), record.control_bound()] for name, record in grids.items()},
        "names": names,
    }


def points(interval: list[float]) -> str:
    return f"{100 * interval[0]:+.1f} [{100 * interval[1]:+.1f}, {100 * interval[2]:+.1f}]"


def gap(found: list[float]) -> str:
    return f"{points(found[:3])} (n={found[3]})"


def rate(interval: list[float]) -> str:
    return f"{100 * interval[0]:.1f}% [{100 * interval[1]:.1f}, {100 * interval[2]:.1f}]"


def mean_std(values: list[float]) -> str:
    values = [100 * v for v in values]
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):+.1f} ± {spread:.1f}"


def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [f"`bench/bench_transfer_controls.py` on {args.device_name} ({cpu_model()}), {args.train_images} "
             f"teacher images, {args.labelled_fraction:.0%} of them labelled for the students "
             f"(label noise {args.label_noise:.0%}), {args.transfer_images} transfer images, super-classes on; "
             f"audit of {args.audit_images} test images; paired 95% bootstrap intervals over images.", "",
             "| seed | teacher | KD student | independent | KD − independent | KD − pseudo-label | KD − random teacher "
             "| KD − KD of T* |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        acc, gains = row["accuracy"], row["gains"]
        lines.append(f"| {row['seed']} | {rate(acc['teacher'])} | {rate(acc['kd_student'])} | "
                     f"{rate(acc['kd_student_independent'])} | " + " | ".join(
                         points(gains[role]) for role in ("independent_student", "pseudo_label_student",
                                                          "random_teacher_student", "other_teacher_student")) + " |")
    lines.append("| mean ± std | | | | " + " | ".join(mean_std([r["gains"][role][0] for r in rows]) for role in (
        "independent_student", "pseudo_label_student", "random_teacher_student", "other_teacher_student")) + " |")
    lines += ["", "| seed | Ojha CAM-closer, KD vs Ind | same, Ind-b vs Ind (control) | fooling gap from T (KD − Ind) "
              "| from T* (foreign control) | invariance T | KD | independent | KD of T* | T* |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        inv, gaps = row["colour_invariance"], row["fooling_gaps"]
        lines.append(f"| {row['seed']} | {rate(row['ojha']['distilled_closer'])} | "
                     f"{rate(row['ojha']['control_closer'])} | {gap(gaps['teacher'])} | {gap(gaps['teacher_star'])} | "
                     + " | ".join(
                         rate(inv[name]) for name in ("teacher", "kd_student", "kd_student_independent",
                                                      "kd_student_other_teacher", "teacher_star")) + " |")
    lines += ["", "| seed | CKA to T, last layers: KD | independent | pseudo-label | shuffled control bound | "
              "train s | audit s |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        cka = row["cka_last_layers"]
        lines.append(f"| {row['seed']} | " + " | ".join(
            f"{cka[name][0]:.3f}" if name in cka else "n/a"
            for name in ("kd_student", "kd_student_independent", "kd_student_pseudo_label")) +
            f" | {max((v[1] for v in cka.values()), default=math.nan):.3f} | {row['train_seconds']:.0f} | "
            f"{row['audit_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-images", type=int, default=8000)
    parser.add_argument("--labelled-fraction", type=float, default=0.1)
    parser.add_argument("--label-noise", type=float, default=0.0)
    parser.add_argument("--transfer-images", type=int, default=8000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--audit-images", type=int, default=1000)
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--student-epochs", type=int, default=20)
    parser.add_argument("--width", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    args.device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        rows.append(one_seed(seed, args))
        print(json.dumps(rows[-1]), flush=True)
        (args.out / "transfer_controls.json").write_text(json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
        (args.out / "transfer_controls.md").write_text(table(rows, args))
    print(table(rows, args))


if __name__ == "__main__":
    main()
