"""KD vs the independent student on ProbeWorld (every label, no transfer set): same student architecture, data,
schedule and seeds, and the earlier demo recipe's colour-invariant teacher, trained here first.

    python bench/bench_distill.py          # 3 seeds; writes bench/results/distill.json and prints a Markdown table
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path

from kdscope import zoo
from kdscope.compress import DistillConfig, distill
from kdscope.core.checkpoint import library_versions
from kdscope.core.stats import bootstrap_ci
from kdscope.core.subject import Subject
from kdscope.data import probeworld
from kdscope.data.augment import Augment
from kdscope.demo import DemoRecipe
from kdscope.train import train

RESULTS = Path(__file__).parent / "results" / "distill.json"
SEEDS = (0, 1, 2)


def main() -> None:
    recipe = DemoRecipe()
    teacher_spec = recipe.models[0]
    student_spec = dataclasses.replace(recipe.student, config=dataclasses.replace(
        recipe.student.config, augment=Augment.colour_jitter()))
    train_data = probeworld(recipe.train_images, split="train", seed=recipe.seed)   # every label, no super-classes
    test_data = probeworld(recipe.test_images, split="test", seed=recipe.seed)
    model = zoo.build(teacher_spec.arch, 10, seed=teacher_spec.config.seed, **teacher_spec.arch_kwargs)
    mean, std = train_data.channel_stats()
    train(model, train_data, teacher_spec.config, mean=mean, std=std, progress=False)
    teacher = Subject(model, name="teacher", role="teacher", mean=mean, std=std, class_names=train_data.class_names)
    kd = DistillConfig()
    rows = []
    for seed in SEEDS:
        config = dataclasses.replace(student_spec.config, seed=seed)
        student = zoo.build(student_spec.arch, 10, seed=seed, **student_spec.arch_kwargs)
        start = time.perf_counter()
        result = distill(teacher, train_data, kd, student=student, train=config, eval_data=test_data, progress=False)
        seconds = time.perf_counter() - start
        control = result.control
        kd_correct = (result.subject.predict(test_data.images()) == test_data.targets()).numpy().astype(float)
        control_correct = (control.subject.predict(test_data.images()) == test_data.targets()).numpy()
        gap = bootstrap_ci(kd_correct - control_correct)
        rows.append({"seed": seed, "kd_accuracy": result.lineage.metrics["accuracy"],
                     "kd_ci95": result.lineage.metrics["accuracy_ci95"],
                     "independent_accuracy": control.lineage.metrics["accuracy"],
                     "independent_ci95": control.lineage.metrics["accuracy_ci95"],
                     "paired_gain_points": [100 * g for g in gap], "seconds_both": seconds})
        print(f"seed {seed}: KD {rows[-1]['kd_accuracy']:.4f}, independent {rows[-1]['independent_accuracy']:.4f}",
              flush=True)
    kd_acc = [r["kd_accuracy"] for r in rows]
    ind_acc = [r["independent_accuracy"] for r in rows]
    gains = [100 * (k - i) for k, i in zip(kd_acc, ind_acc)]
    summary = {"teacher_accuracy": teacher.evaluate(test_data)["accuracy"], "kd": dataclasses.asdict(kd),
               "student": student_spec.arch_kwargs, "epochs": student_spec.config.epochs, "seeds": rows,
               "kd_mean": statistics.mean(kd_acc), "kd_std": statistics.stdev(kd_acc),
               "independent_mean": statistics.mean(ind_acc), "independent_std": statistics.stdev(ind_acc),
               "gain_mean_points": statistics.mean(gains), "gain_std_points": statistics.stdev(gains),
               "versions": library_versions()}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2))
    print(f"\nteacher {summary['teacher_accuracy']:.1%}; KD: T={kd.temperature}, alpha={kd.alpha}, "
          f"{summary['epochs']} epochs, student {summary['student']}\n")
    print("| seed | KD student [95% CI] | independent student [95% CI] | KD gain, points (paired 95% CI) |")
    print("|---|---|---|---|")
    for r in rows:
        g = r["paired_gain_points"]
        print(f"| {r['seed']} | {r['kd_accuracy']:.1%} [{r['kd_ci95'][0]:.1%}, {r['kd_ci95'][1]:.1%}] | "
              f"{r['independent_accuracy']:.1%} [{r['independent_ci95'][0]:.1%}, {r['independent_ci95'][1]:.1%}] | "
              f"{g[0]:+.1f} [{g[1]:+.1f}, {g[2]:+.1f}] |")
    print(f"| mean ± std | {summary['kd_mean']:.1%} ± {100 * summary['kd_std']:.1f} | "
          f"{summary['independent_mean']:.1%} ± {100 * summary['independent_std']:.1f} | "
          f"{summary['gain_mean_points']:+.1f} ± {summary['gain_std_points']:.1f} |")


if __name__ == "__main__":
    main()
