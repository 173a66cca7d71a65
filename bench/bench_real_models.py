"""A model kdscope did not write, end to end: a HuggingFace ViT teacher (64x64 ProbeWorld, patches of 8x8) distilled
into a zoo CNN, audited against that student and its independent control; its Grad-CAM localisation against a zoo CNN
teacher trained on the same images for the same number of epochs; kdscope's Grad-CAM on the ViT timed against
pytorch-grad-cam's `GradCAM` with a hand-written `reshape_transform`.

    python bench/bench_real_models.py           # sized for about 10 min on 2 idle cores (59.5 min measured with the
                                                # cores shared); writes bench/results/real_models.{json,md}
    python bench/bench_real_models.py --quick   # a smoke run of every part: few images, one epoch
Prints Markdown tables (with the CPU model).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path

import torch
from transformers import ViTConfig, ViTForImageClassification

from common import grad_cam_modules
from kdscope import Subject, zoo
from kdscope.audit import Plan, audit
from kdscope.compress import DistillConfig, distill
from kdscope.core.checkpoint import library_versions
from kdscope.core.stats import bootstrap_ci
from kdscope.core.subject import RawInputModel
from kdscope.data import probeworld
from kdscope.data.augment import Augment
from kdscope.explainers import explain
from kdscope.explainers.similarity import pointing_game, relevance_mass
from kdscope.results.values import Unavailable
from kdscope.train import TrainConfig, train
from timing import cpu_model, time_stages

RESULTS = Path(__file__).parent / "results" / "real_models.json"
STUDENT = "kd_student"
CONTROL = f"{STUDENT}_independent"


@dataclass(frozen=True)
class Setting:
    """Sizes and schedules; `quick()` shrinks every one of them for a smoke run."""

    train_images: int = 3000
    test_images: int = 1000
    size: int = 64
    epochs: int = 12
    vit: tuple[int, int, int, int] = (96, 4, 4, 192)
    """hidden size, blocks, heads, MLP width"""
    audit_images: int = 256
    localisation_images: int = 500
    timing_images: int = 64
    timing_repeats: int = 7
    threads: int = 2

    @classmethod
    def quick(cls) -> Setting:
        return cls(train_images=200, test_images=64, epochs=1, audit_images=32, localisation_images=32,
                   timing_images=8, timing_repeats=2)


def build_vit(setting: Setting) -> ViTForImageClassification:
    hidden, blocks, heads, mlp = setting.vit
    return ViTForImageClassification(ViTConfig(image_size=setting.size, patch_size=8, hidden_size=hidden,
                                               num_hidden_layers=blocks, num_attention_heads=heads,
                                               intermediate_size=mlp, num_labels=10))


def train_models(setting: Setting, train_set, test_set) -> tuple[dict[str, Subject], dict]:
    """The ViT teacher, a zoo ResNet teacher (same images, same epochs; each with the optimiser its kind trains
    with), and the CNN student distilled from the ViT with its independent control."""
    mean, std = train_set.channel_stats()
    seconds = {}
    torch.manual_seed(0)
    vit = build_vit(setting)
    schedules = {
        "vit": TrainConfig(epochs=setting.epochs, batch_size=64, optimizer="adamw", lr=2e-3, weight_decay=0.05,
                           augment=Augment(crop_padding=4, flip=True)),
        "cnn_teacher": TrainConfig(epochs=setting.epochs, lr=0.05, augment=Augment.colour_jitter(crop_padding=4),
                                   channels_last=True),
        STUDENT: TrainConfig(epochs=setting.epochs, lr=0.05, augment=Augment.colour_jitter(crop_padding=4)),
    }
    subjects = {}
    for name, model in (("vit", vit), ("cnn_teacher", zoo.build("resnet", 10, seed=0, width=16, blocks=1))):
        start = time.perf_counter()
        train(model, train_set, schedules[name], progress=False)
        seconds[name] = time.perf_counter() - start
        subjects[name] = Subject(model.eval(), name=name, role="teacher" if name == "vit" else "other", mean=mean,
                                 std=std, class_names=train_set.class_names)
    start = time.perf_counter()
    result = distill(subjects["vit"], train_set, DistillConfig(), student=zoo.build("student", 10, seed=0, width=5,
                     blocks=2), train=schedules[STUDENT], name=STUDENT, progress=False)
    seconds["distill_and_control"] = time.perf_counter() - start
    subjects[STUDENT], subjects[CONTROL] = result.subject, result.control.subject
    accuracy = {name: subject.evaluate(test_set)["accuracy"] for name, subject in subjects.items()}
    schedules_plain = {name: {k: v for k, v in asdict(c).items() if k != "augment"} | {"augment": repr(c.augment)}
                       for name, c in schedules.items()}
    return subjects, {"train_seconds": seconds, "test_accuracy": accuracy, "schedules": schedules_plain}


def stage_status(results, stages: tuple[str, ...]) -> dict[str, dict]:
    """Per stage: how many values its record holds, and every measurement it refused (an `Unavailable` anywhere in
    the record), with where and why."""
    status = {}
    for stage in stages:
        refused: list[dict] = []
        filled = _walk(results.stages[stage], stage, refused) if stage in results.stages else 0
        status[stage] = {"filled": filled, "refused": refused or ([] if stage in results.stages else
                                                                   [{"where": stage, "reason": "not run"}])}
    return status


def _walk(value: object, where: str, refused: list[dict]) -> int:
    """Values in a stage's record (an interval or a list of numbers counts once); each Unavailable goes to
    `refused` with its path."""
    if isinstance(value, Unavailable):
        refused.append({"where": where, "reason": value.reason})
        return 0
    if is_dataclass(value):
        return sum(_walk(getattr(value, f.name), f"{where}.{f.name}", refused) for f in fields(value))
    if isinstance(value, dict):
        return sum(_walk(item, f"{where}.{key}", refused) for key, item in value.items())
    if isinstance(value, (list, tuple)) and value and not isinstance(value[0], (int, float, str)):
        return sum(_walk(item, f"{where}[{index}]", refused) for index, item in enumerate(value))
    return 1


def localisation_pair(vit: Subject, cnn: Subject, test_set, n: int) -> dict:
    """Grad-CAM pointing game and relevance mass of the ViT and of the CNN teacher on the same images (true
    class), each with its 95% interval, and the paired difference ViT - CNN in points."""
    x, y = test_set.images(slice(0, n)), test_set.targets(slice(0, n))
    masks = torch.from_numpy(test_set.masks[:n])
    scores = {}
    for name, subject, method in ((vit.name, vit, "gradcam"), (cnn.name, cnn, "gradcam"),
                                  (f"{vit.name} (attention rollout)", vit, "attention_rollout")):
        maps = explain(subject, x, y, method=method).maps_2d
        scores[name] = {"pointing_game": pointing_game(maps, masks).astype(float),
                        "relevance_mass": relevance_mass(maps, masks)}
    summary = {name: {metric: bootstrap_ci(values) for metric, values in per.items()} for name, per in scores.items()}
    gap = {metric: tuple(100 * v for v in bootstrap_ci(scores[vit.name][metric] - scores[cnn.name][metric]))
           for metric in ("pointing_game", "relevance_mass")}
    return {"images": n, "scores": summary, "vit_minus_cnn_points": gap,
            "mask_area_share": float(masks.float().mean())}


def gradcam_timing(vit: Subject, test_set, n: int, repeats: int) -> dict:
    """kdscope's Grad-CAM on the ViT (its default layer, the last block's input norm) against pytorch-grad-cam's
    GradCAM on the same layer with the tutorial's reshape_transform, both on a batch of `n` images for the true
    class. pytorch-grad-cam returns each map min-max scaled to [0, 1]; kdscope's maps are scaled the same way for
    the comparison."""
    grad_cam, targets = grad_cam_modules("pytorch_grad_cam.grad_cam", "pytorch_grad_cam.utils.model_targets")
    x, y = test_set.images(slice(0, n)), test_set.targets(slice(0, n))
    rows, columns = vit.model.config.image_size // 8, vit.model.config.image_size // 8

    def reshape_transform(tensor: torch.Tensor) -> torch.Tensor:
        """Patch tokens (the class token dropped) back on their grid, channels first."""
        grid = tensor[:, 1:, :].reshape(tensor.size(0), rows, columns, tensor.size(2))
        return grid.transpose(2, 3).transpose(1, 2)

    layer = vit.model.vit.layers[-1].layernorm_before
    peer = grad_cam.GradCAM(model=RawInputModel(vit).eval(), target_layers=[layer],
                            reshape_transform=reshape_transform)
    peer_targets = [targets.ClassifierOutputTarget(int(c)) for c in y]

    def ours() -> torch.Tensor:
        return explain(vit, x, y, method="gradcam")

    def theirs() -> torch.Tensor:
        return torch.from_numpy(peer(input_tensor=x.clone(), targets=peer_targets))

    explanation, their_maps = ours(), theirs()
    ours_maps = explanation.maps_2d
    low = ours_maps.flatten(1).min(dim=1).values.view(-1, 1, 1)
    high = ours_maps.flatten(1).max(dim=1).values.view(-1, 1, 1)
    scaled = (ours_maps - low) / (high - low + 1e-7)
    times: dict[str, list[float]] = {"ours": [], "peer": []}
    for _ in range(repeats):
        for label, call in (("ours", ours), ("peer", theirs)):
            start = time.perf_counter()
            call()
            times[label].append(time.perf_counter() - start)
    return {"images": n, "layer": explanation.params["layer"], "ours_s": statistics.median(times["ours"]),
            "peer_s": statistics.median(times["peer"]),
            "ratio": statistics.median(a / b for a, b in zip(times["ours"], times["peer"])),
            "max_abs_difference_scaled": float((scaled - their_maps).abs().max()),
            "flat_maps": int((high.flatten() <= 0).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few images, one epoch")
    args = parser.parse_args()
    setting = Setting.quick() if args.quick else Setting()
    torch.set_num_threads(setting.threads)
    begin, load_at_start = time.perf_counter(), os.getloadavg()
    train_set = probeworld(setting.train_images, split="train", seed=0, size=setting.size)
    test_set = probeworld(setting.test_images, split="test", seed=0, size=setting.size)
    subjects, training = train_models(setting, train_set, test_set)
    print(json.dumps(training["test_accuracy"]), flush=True)

    plan = Plan(images=setting.audit_images, explainers=("gradcam", "gradient", "guided_backprop", "attention_rollout"),
                sanity_methods=("gradient", "gradcam", "guided_backprop"), robust_images=setting.audit_images // 2)
    stage_seconds = time_stages()
    start = time.perf_counter()
    results = audit([subjects["vit"], subjects[STUDENT], subjects[CONTROL]], test_set, plan, progress=False)
    audit_seconds = time.perf_counter() - start
    status = stage_status(results, plan.stages)
    grids = {name: results.stages["cka"].grid(name) for name in (STUDENT, CONTROL)}
    explanations = results.stages["explanations"]
    audit_localisation = {name: explanations.localisation(name, method).to_plain()
                          for name in ("vit", STUDENT, CONTROL) for method in ("gradcam",)}
    localisation = localisation_pair(subjects["vit"], subjects["cnn_teacher"], test_set,
                                     setting.localisation_images)
    timing = gradcam_timing(subjects["vit"], test_set, setting.timing_images, setting.timing_repeats)
    summary = {"setting": asdict(setting), "quick": args.quick, "cpu": cpu_model(),
               "load_average": {"start": load_at_start, "end": os.getloadavg()}, **training,
               "audit_seconds": audit_seconds, "stage_seconds": stage_seconds, "stages": status,
               "cka": {name: grid.to_plain() for name, grid in grids.items()},
               "audit_localisation_gradcam": audit_localisation, "localisation": localisation,
               "gradcam_timing": timing, "total_seconds": time.perf_counter() - begin,
               "versions": library_versions()}
    path = RESULTS.with_name("real_models_quick.json") if args.quick else RESULTS
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(summary, indent=1, default=float))
    text = tables(summary)
    path.with_suffix(".md").write_text(text)
    print(text)


def tables(summary: dict) -> str:
    """The Markdown tables of a run, from its JSON summary."""
    s = summary["setting"]
    load = summary.get("load_average")
    busy = f"; load average {load['start'][0]:.1f} at the start, {load['end'][0]:.1f} at the end" if load else ""
    lines = [f"CPU: {summary['cpu']}, {s['threads']} threads; ProbeWorld {s['size']}x{s['size']}, "
             f"{s['train_images']} train / {s['test_images']} test images, {s['epochs']} epochs each; total "
             f"{summary['total_seconds'] / 60:.1f} min (audit {summary['audit_seconds']:.0f} s){busy}",
             "", "| model | test accuracy | training time |", "|---|---|---|"]
    seconds = summary["train_seconds"]
    for name, accuracy in summary["test_accuracy"].items():
        together = name in (STUDENT, CONTROL)
        spent = seconds["distill_and_control"] if together else seconds[name]
        lines.append(f"| {name} | {accuracy:.1%} | {spent:.0f} s{' (KD and control together)' if together else ''} |")
    lines += ["", "| audit stage | time | result | refused entries (where: why, shortened; the JSON has each reason) |",
              "|---|---|---|---|"]
    for stage, entry in summary["stages"].items():
        reasons: dict[str, list[str]] = {}
        for refusal in entry["refused"]:
            reasons.setdefault(re.split(r"[;:]| \(", refusal["reason"])[0], []).append(
                refusal["where"].removeprefix(f"{stage}."))
        cell = "; ".join(f"{', '.join(where)}: {reason}" for reason, where in reasons.items()) or "none"
        result = "filled" if not entry["refused"] else (
            "refused" if not entry["filled"] else f"filled, {len(entry['refused'])} entries refused")
        lines.append(f"| {stage} | {summary['stage_seconds'].get(stage, 0):.0f} s | {result} | {cell} |")
    for name, grid in summary["cka"].items():
        if Unavailable.holds(grid):
            lines += ["", f"CKA {name}: unavailable: {grid['unavailable']}"]
            continue
        bound = max(abs(v) for row in grid["control"] for v in row)
        kind = "debiased" if grid["debiased"] else "biased"
        lines += ["", f"CKA ({kind}), ViT blocks (rows) x {name} layers (columns), each layer's output "
                      f"{grid['reduce']}-pooled over its positions; shuffled-pairing control within +-{bound:.2f}",
                  "", "| ViT block | " + " | ".join(grid["columns"]) + " |", "|---|" + "---|" * len(grid["columns"])]
        lines += [f"| {row} | " + " | ".join(f"{v:.2f}" for v in values) + " |"
                  for row, values in zip(grid["rows"], grid["values"])]
    loc = summary["localisation"]
    lines += ["", f"Grad-CAM localisation on {loc['images']} test images, true class (masks cover "
                  f"{loc['mask_area_share']:.0%} of the image):",
              "", "| model | pointing game [95% CI] | relevance mass in mask [95% CI] |", "|---|---|---|"]
    lines += [f"| {name} | {_ci(scores['pointing_game'])} | {_ci(scores['relevance_mass'])} |"
              for name, scores in loc["scores"].items()]
    gap = loc["vit_minus_cnn_points"]
    lines.append("| ViT - CNN teacher, paired (points) | " + " | ".join(
        f"{gap[m][0]:+.1f} [{gap[m][1]:+.1f}, {gap[m][2]:+.1f}]" for m in ("pointing_game", "relevance_mass")) + " |")
    lines += ["", "In the audit (its own sample of images):"]
    for name, entry in summary["audit_localisation_gradcam"].items():
        shown = entry["unavailable"] if "unavailable" in entry else _ci(entry["pointing_game"])
        lines.append(f"- {name}: Grad-CAM pointing game {shown}")
    t = summary["gradcam_timing"]
    lines += ["", f"| Grad-CAM on the ViT, layer {t['layer']} | kdscope | pytorch-grad-cam | kdscope / peer | "
                  "max abs difference (maps min-max scaled) |", "|---|---|---|---|---|",
              f"| batch of {t['images']} images | {1000 * t['ours_s']:.0f} ms | {1000 * t['peer_s']:.0f} ms | "
              f"{t['ratio']:.2f} | {t['max_abs_difference_scaled']:.1e} |"]
    return "\n".join(lines) + "\n"


def _ci(values: list[float]) -> str:
    return f"{values[0]:.1%} [{values[1]:.1%}, {values[2]:.1%}]"


if __name__ == "__main__":
    main()
