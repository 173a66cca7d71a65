"""What was tried when KD did not beat the independent student: a sweep of loss, temperature, alpha and schedule
length over 5 seeds (uses a GPU when there is one; the demo data, teacher recipe and student).

    python bench/sweep_distill.py          # writes bench/results/distill_sweep.json and prints a Markdown table
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import torch

from kdscope import zoo
from kdscope.compress import DistillConfig, distill
from kdscope.core.checkpoint import library_versions
from kdscope.core.subject import Subject
from kdscope.data import probeworld
from kdscope.demo import DemoRecipe
from kdscope.train import train

RESULTS = Path(__file__).parent / "results" / "distill_sweep.json"
SEEDS = (0, 1, 2, 3, 4)
VARIANTS = {
    "KL T=4 a=0.5 (default)": DistillConfig(),
    "KL T=4 a=0.1": DistillConfig(alpha=0.1),
    "KL T=2 a=0.5": DistillConfig(temperature=2.0),
    "KL T=8 a=0.5": DistillConfig(temperature=8.0),
    "reverse KL T=4 a=0.5": DistillConfig(kind="reverse_kl"),
    "logit L2 a=0.5": DistillConfig(kind="logits"),
}
LONG_EPOCHS = 40


def main() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    recipe = DemoRecipe()
    teacher_spec, student_spec = recipe.models
    train_data = probeworld(recipe.train_images, split="train", seed=recipe.seed)
    test_data = probeworld(recipe.test_images, split="test", seed=recipe.seed)
    teacher_model = zoo.build(teacher_spec.arch, 10, seed=0, **teacher_spec.arch_kwargs).to(device)
    train(teacher_model, train_data, teacher_spec.config, progress=False)
    mean, std = train_data.channel_stats()
    teacher = Subject(teacher_model, name="teacher", role="teacher", mean=mean, std=std)
    teacher_accuracy = teacher.evaluate(test_data)["accuracy"]
    print(f"teacher {teacher_accuracy:.4f} on {device}", flush=True)

    accuracy: dict[str, list[float]] = {}
    for seed in SEEDS:
        for epochs in (student_spec.config.epochs, LONG_EPOCHS):
            config = dataclasses.replace(student_spec.config, seed=seed, epochs=epochs)
            variants = VARIANTS if epochs == student_spec.config.epochs else {"KL T=4 a=0.5 (default)": DistillConfig()}
            for index, (label, kd) in enumerate(variants.items()):
                student = zoo.build(student_spec.arch, 10, seed=seed, **student_spec.arch_kwargs).to(device)
                controls = ("independent",) if index == 0 else ()
                result = distill(teacher, train_data, kd, student=student, train=config, controls=controls,
                                 eval_data=test_data, progress=False)
                suffix = f", {epochs} epochs"
                accuracy.setdefault(label + suffix, []).append(result.lineage.metrics["accuracy"])
                if result.control is not None:
                    accuracy.setdefault("independent" + suffix, []).append(
                        result.control.lineage.metrics["accuracy"])
        print(f"seed {seed} done", flush=True)

    rows = {}
    for label, values in accuracy.items():
        epochs = label.rsplit(", ", 1)[1]
        control = accuracy[f"independent, {epochs}"]
        gains = [100 * (v - c) for v, c in zip(values, control)]
        rows[label] = {"accuracy": values, "mean": statistics.mean(values), "std": statistics.stdev(values),
                       "gain_mean_points": statistics.mean(gains), "gain_std_points": statistics.stdev(gains)}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"device": device, "teacher_accuracy": teacher_accuracy, "seeds": SEEDS,
                                   "rows": rows, "versions": library_versions()}, indent=2))
    print(f"\nteacher {teacher_accuracy:.1%}; {len(SEEDS)} seeds; device {device}\n")
    print("| student | test accuracy, mean ± std | gain over independent (same seeds), points |\n|---|---|---|")
    for label, row in rows.items():
        print(f"| {label} | {row['mean']:.1%} ± {100 * row['std']:.1f} | "
              f"{row['gain_mean_points']:+.1f} ± {row['gain_std_points']:.1f} |")


if __name__ == "__main__":
    main()
