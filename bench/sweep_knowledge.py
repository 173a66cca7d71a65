"""The knowledge-transfer table (Ojha et al. 2023 directions, SPEC section 9) on ProbeWorld: what a KD student
inherits from its teacher beyond accuracy, each statistic against its control, over several student seeds.

Students are trained *without* colour jitter, so any colour invariance they show came from the teacher.
    python bench/sweep_knowledge.py --device cuda --seeds 0 1     # writes bench/results/knowledge.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from common import demo_setting
from kdscope import Subject, zoo
from kdscope.attacks import transfer_matrix
from kdscope.compare.cams import OjhaAccumulator, gradcam_maps
from kdscope.compare.probes import consensus, invariance, shape_decisions, shortcut_reliance
from kdscope.compress import distill
from kdscope.core.checkpoint import library_versions
from kdscope.core.stats import bootstrap_ci
from kdscope.data import probeworld
from kdscope.data.augment import Augment
from kdscope.train import train

RESULTS = Path(__file__).parent / "results" / "knowledge.json"


def trained(arch: str, kwargs: dict, data, config, seed: int, device: str, name: str, mean, std) -> Subject:
    model = zoo.build(arch, 10, seed=seed, **kwargs).to(device)
    train(model, data, dataclasses.replace(config, seed=seed), mean=mean, std=std, progress=False)
    return Subject(model, name=name, mean=mean, std=std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=None, help="Override every schedule (a quick smoke run).")
    parser.add_argument("--train-images", type=int, default=None, help="Train on this many images (smoke run).")
    args = parser.parse_args()
    recipe, teacher, train_data, _ = demo_setting(args.device)
    if args.train_images:
        train_data = train_data.subset(range(args.train_images))
    mean, std = teacher.mean.flatten().tolist(), teacher.std.flatten().tolist()
    teacher_spec = next(m for m in recipe.models if m.role == "teacher")
    student_spec = recipe.student
    epochs = {"epochs": args.epochs} if args.epochs else {}
    plain = dataclasses.replace(student_spec.config, augment=Augment(), **epochs)
    teacher_config = dataclasses.replace(teacher_spec.config, **epochs)
    n, split = args.n, "test"
    clean = probeworld(n, split=split, seed=recipe.seed)
    shifted = probeworld(n, split=split, seed=recipe.seed, variant="colour_shift")
    unseen = probeworld(n, split=split, seed=recipe.seed, variant="unseen_domain")
    conflict = probeworld(n, split=split, seed=recipe.seed, variant="cue_conflict")
    shortcut_test = probeworld(n, split=split, seed=recipe.seed, variant="shortcut", shortcut_rate=0.1)
    shortcut_train = probeworld(recipe.train_images, split="train", seed=recipe.seed, variant="shortcut")
    non_invariant = trained(teacher_spec.arch, teacher_spec.arch_kwargs, train_data,
                            dataclasses.replace(teacher_config, augment=Augment()), teacher_spec.config.seed,
                            args.device, "teacher_no_jitter", mean, std)
    if args.train_images:
        shortcut_train = shortcut_train.subset(range(args.train_images))
    shortcut_teacher = trained(teacher_spec.arch, teacher_spec.arch_kwargs, shortcut_train, teacher_config,
                               teacher_spec.config.seed, args.device, "teacher_shortcut", mean, std)
    unrelated = trained("vgg", {"width": 16}, train_data, plain, 100, args.device, "unrelated_vgg", mean, std)
    arms = []
    for seed in args.seeds:
        student = zoo.build(student_spec.arch, 10, seed=seed, **student_spec.arch_kwargs).to(args.device)
        config = dataclasses.replace(plain, seed=seed)
        kd = distill(teacher, train_data, student=student, train=config, eval_data=clean, progress=False)
        kd_plain = distill(non_invariant, train_data, student=student, train=config, controls=(),
                           progress=False).subject
        kd_shortcut = distill(shortcut_teacher, train_data, student=student, train=config, controls=(),
                              progress=False).subject
        arms.append({"seed": seed, "kd": kd.subject, "independent": kd.control.subject, "kd_plain": kd_plain,
                     "kd_shortcut": kd_shortcut})
        print(f"seed {seed}: students trained", flush=True)
    x, y = clean.images(), clean.targets()
    teacher_maps = gradcam_maps(teacher, x, y)
    rows = []
    for index, arm in enumerate(arms):
        other = arms[(index + 1) % len(arms)]
        row = {"seed": arm["seed"]}
        ojha = OjhaAccumulator().update(teacher_maps, gradcam_maps(arm["kd"], x, y),
                                        gradcam_maps(arm["independent"], x, y),
                                        gradcam_maps(other["independent"], x, y)).compute()
        row["cam_closer_kd"], row["cam_closer_control"] = ojha["distilled_closer"], ojha["control_closer"]
        arm["kd"].name, arm["independent"].name = "kd", "independent"
        matrix = transfer_matrix([teacher, arm["kd"], arm["independent"], unrelated], x, y, attack="pgd",
                                 eps=4 / 255, steps=10, seed=arm["seed"])
        for source in ("teacher", "unrelated_vgg"):
            for target in ("kd", "independent"):
                row[f"fooling_{source}_to_{target}"] = matrix.cell(source, target).fooling
        for name, model in (("teacher", teacher), ("kd", arm["kd"]), ("independent", arm["independent"]),
                            ("teacher_no_jitter", non_invariant), ("kd_of_no_jitter", arm["kd_plain"])):
            row[f"invariance_{name}"] = bootstrap_ci(invariance(model, clean, shifted))
        row["consensus_kd"] = bootstrap_ci(consensus(teacher, arm["kd"], unseen))
        row["consensus_independent"] = bootstrap_ci(consensus(teacher, arm["independent"], unseen))
        for name, model in (("teacher", teacher), ("kd", arm["kd"]), ("independent", arm["independent"])):
            row[f"shape_bias_{name}"] = bootstrap_ci(shape_decisions(model, conflict))
        for name, model in (("teacher_shortcut", shortcut_teacher), ("kd_of_shortcut", arm["kd_shortcut"]),
                            ("independent", arm["independent"])):
            row[f"shortcut_{name}"] = bootstrap_ci(shortcut_reliance(model, shortcut_test))
        rows.append(row)
        print(json.dumps({k: (round(v[0], 4) if isinstance(v, tuple) else v) for k, v in row.items()}), flush=True)
    summary = {}
    for key in (k for k in rows[0] if k != "seed"):
        values = np.array([r[key][0] for r in rows], dtype=float)
        summary[key] = (float(np.nanmean(values)), float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows, "summary": summary, "images": n, "versions": library_versions()},
                                  indent=1, default=float))
    print("\n| statistic | mean ± std over seeds |")
    print("|---|---|")
    for key, (mean_value, std_value) in summary.items():
        print(f"| {key} | {100 * mean_value:.1f}% ± {100 * std_value:.1f} |")


if __name__ == "__main__":
    main()
