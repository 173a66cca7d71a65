"""Pruning on ProbeWorld with the demo teacher: the accuracy-vs-sparsity curve (one-shot + fine-tuning, lottery
tickets with rewinding, their random-reinitialisation control), structured filter pruning against torch-pruning,
and our masks against torch.nn.utils.prune's.

    python bench/bench_prune.py --only curve --device cuda   # the training-heavy part (runs on CPU too, slowly)
    python bench/bench_prune.py --only structured            # CPU: latency and size ratios need this machine
    python bench/bench_prune.py --only masks
Each part writes bench/results/prune_PART.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from common import demo_setting
from kdscope import Subject, zoo
from kdscope.compress import DistillConfig
from kdscope.compress.lineage import state_dict_bytes
from kdscope.compress.masks import prunable_layers
from kdscope.compress.prune import LotteryConfig, PruneConfig, lottery_ticket, magnitude_masks, prune
from kdscope.compress.structured import StructuredConfig, structured_prune
from kdscope.core.checkpoint import library_versions
from kdscope.train import TrainConfig
from timing import interleaved_ms

RESULTS = Path(__file__).parent / "results"
SPARSITIES = (0.5, 0.8, 0.9, 0.95)




def curve(device: str, fine_tune_epochs: int, rounds: int) -> dict:
    """One-shot global magnitude pruning + fine-tuning (cross-entropy and KD recovery) at each sparsity; iterative
    pruning with rewinding from the teacher's own recipe, and the random-reinit control at the same masks."""
    recipe, teacher, train_data, test_data = demo_setting(device)
    teacher_spec = next(m for m in recipe.models if m.role == "teacher")
    fine_tune = TrainConfig(epochs=fine_tune_epochs, lr=0.01, warmup_epochs=0, augment=teacher_spec.config.augment)
    rows = {"teacher_accuracy": teacher.evaluate(test_data)["accuracy"], "one_shot": [], "lottery": []}
    for sparsity in SPARSITIES:
        row = {"sparsity": sparsity}
        for label, recover in (("fine_tuned", None), ("kd_recovered", DistillConfig())):
            start = time.perf_counter()
            result = prune(teacher, train_data, PruneConfig(sparsity), train=fine_tune, recover=recover,
                           eval_data=test_data, progress=False)
            row[label] = {k: result.lineage.metrics[k] for k in ("accuracy", "accuracy_ci95", "sparsity")}
            row[label]["seconds"] = time.perf_counter() - start
        untuned = prune(teacher, config=PruneConfig(sparsity), eval_data=test_data, progress=False)
        row["no_fine_tuning"] = {k: untuned.lineage.metrics[k] for k in ("accuracy", "accuracy_ci95")}
        rows["one_shot"].append(row)
        print(json.dumps(row), flush=True)
        _save("curve", rows)
    model = zoo.build(teacher_spec.arch, 10, seed=teacher_spec.config.seed, **teacher_spec.arch_kwargs).to(device)
    mean, std = train_data.channel_stats()
    initial = Subject(model, name="teacher_init", mean=mean, std=std)
    result = lottery_ticket(initial, train_data, LotteryConfig(rounds=rounds, rate=0.5, rewind_epoch=1),
                            train=teacher_spec.config, eval_data=test_data, progress=False)
    rows["lottery_dense_accuracy"] = result.lineage.metrics["parent_accuracy"]
    for ticket in result.rounds:
        rows["lottery"].append({
            "sparsity": ticket.lineage.metrics["sparsity"],
            "ticket": {k: ticket.lineage.metrics[k] for k in ("accuracy", "accuracy_ci95")},
            "random_reinit": {k: ticket.control.lineage.metrics[k] for k in ("accuracy", "accuracy_ci95")},
        })
        print(json.dumps(rows["lottery"][-1]), flush=True)
        _save("curve", rows)
    rows["fine_tune"] = dataclasses.asdict(fine_tune)
    rows["teacher_recipe"] = {"epochs": teacher_spec.config.epochs, "lr": teacher_spec.config.lr}
    return rows


def ci(metrics: dict) -> str:
    low, high = metrics["accuracy_ci95"]
    return f"{metrics['accuracy']:.1%} [{low:.1%}, {high:.1%}]"


def print_curve(rows: dict) -> None:
    print(f"\nteacher {rows['teacher_accuracy']:.1%}; dense retrain for tickets {rows['lottery_dense_accuracy']:.1%}")
    print("\n| global sparsity | one-shot, no fine-tuning | one-shot + fine-tuning | one-shot + KD recovery |")
    print("|---|---|---|---|")
    for r in rows["one_shot"]:
        print(f"| {r['sparsity']:.0%} | {ci(r['no_fine_tuning'])} | {ci(r['fine_tuned'])} | {ci(r['kd_recovered'])} |")
    print("\n| sparsity | lottery ticket (rewind to epoch 1) | same mask, random re-init |")
    print("|---|---|---|")
    for r in rows["lottery"]:
        print(f"| {r['sparsity']:.1%} | {ci(r['ticket'])} | {ci(r['random_reinit'])} |")


def structured(fine_tune_epochs: int) -> dict:
    """50% of channels removed: ours (traced groups, residual stream included) and torch-pruning's, same run."""
    import torch_pruning as tp

    recipe, teacher, train_data, test_data = demo_setting()
    teacher_spec = next(m for m in recipe.models if m.role == "teacher")
    shape = test_data.image_shape
    fine_tune = TrainConfig(epochs=fine_tune_epochs, lr=0.01, warmup_epochs=0, augment=teacher_spec.config.augment)
    rows = {"teacher": _size(teacher) | {"accuracy": teacher.evaluate(test_data)["accuracy"]}}
    models = {"teacher": teacher}
    ours = structured_prune(teacher, train_data, StructuredConfig(0.5), eval_data=test_data, progress=False)
    rows["ours_no_fine_tuning"] = _size(ours.subject) | {"accuracy": ours.lineage.metrics["accuracy"]}
    models["ours_no_fine_tuning"] = ours.subject
    for label, recover in (("ours_fine_tuned", None), ("ours_kd_recovered", DistillConfig())):
        result = structured_prune(teacher, train_data, StructuredConfig(0.5), train=fine_tune, recover=recover,
                                  eval_data=test_data, progress=False)
        models[label] = result.subject
        rows[label] = _size(result.subject) | {
            "accuracy": result.lineage.metrics["accuracy"], "accuracy_ci95": result.lineage.metrics["accuracy_ci95"]}
        print(label, json.dumps(rows[label]), flush=True)
    peer_model = copy.deepcopy(teacher.model)
    example = torch.zeros(1, *shape)
    pruner = tp.pruner.MetaPruner(peer_model, example, importance=tp.importance.GroupMagnitudeImportance(p=1),
                                  pruning_ratio=0.5, ignored_layers=[peer_model.fc])
    pruner.step()
    peer = Subject(peer_model, name="torch_pruning", mean=teacher.mean.flatten().tolist(),
                   std=teacher.std.flatten().tolist())
    rows["torch_pruning_no_fine_tuning"] = _size(peer) | {"accuracy": peer.evaluate(test_data)["accuracy"]}
    models["torch_pruning_no_fine_tuning"] = peer
    for batch in (64, 1):
        timing = interleaved_ms(models, shape, batch, repeats=60)
        for label in models:
            rows[label][f"latency_ms_b{batch}"] = timing[label]
            rows[label][f"latency_ratio_b{batch}"] = timing["ratios"][label]["teacher"]
    rows["versions"] = {**library_versions(), "torch_pruning": tp.__version__}
    return rows


def _size(subject: Subject) -> dict:
    return {"parameters": sum(p.numel() for p in subject.model.parameters()),
            "file_bytes": state_dict_bytes(subject.model)}


def print_structured(rows: dict) -> None:
    base = rows["teacher"]
    print("\n| model (50% of channels removed) | accuracy | parameters | file | latency b64 | latency b1 |")
    print("|---|---|---|---|---|---|")
    for label in ("teacher", "ours_no_fine_tuning", "ours_fine_tuned", "ours_kd_recovered",
                  "torch_pruning_no_fine_tuning"):
        r = rows[label]
        latency = (f"{r['latency_ms_b64']:.1f} ms ({r['latency_ratio_b64']:.2f}x) | "
                   f"{r['latency_ms_b1']:.2f} ms ({r['latency_ratio_b1']:.2f}x)" if "latency_ms_b1" in r else "- | -")
        print(f"| {label} | {r['accuracy']:.1%} | {r['parameters']:,} ({r['parameters'] / base['parameters']:.2f}x) | "
              f"{r['file_bytes'] / 1024:.0f} KB ({r['file_bytes'] / base['file_bytes']:.2f}x) | {latency} |")


def masks() -> dict:
    """Our masks against torch.nn.utils.prune's global L1 pruning on the teacher: mismatches and time."""
    from torch.nn.utils import prune as torch_prune

    _, teacher, _, _ = demo_setting()
    rows = []
    for sparsity in SPARSITIES:
        ours_times, peer_times = [], []
        for _ in range(5):
            start = time.perf_counter()
            ours = magnitude_masks(teacher.model, sparsity)
            ours_times.append(time.perf_counter() - start)
            reference = copy.deepcopy(teacher.model)
            layers = prunable_layers(reference)
            start = time.perf_counter()
            torch_prune.global_unstructured([(m, "weight") for m in layers.values()], torch_prune.L1Unstructured,
                                            amount=sparsity)
            peer_times.append(time.perf_counter() - start)
        mismatches = sum(int((ours[n] != m.weight_mask.bool()).sum()) for n, m in layers.items())
        rows.append({"sparsity": sparsity, "weights": sum(m.numel() for m in ours.values()),
                     "mismatches": mismatches, "ours_ms": 1000 * statistics.median(ours_times),
                     "torch_ms": 1000 * statistics.median(peer_times)})
    return {"rows": rows, "versions": library_versions()}


def print_masks(result: dict) -> None:
    print("\n| global sparsity | weights | masks differing from torch.nn.utils.prune | time ours / torch |")
    print("|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['sparsity']:.0%} | {r['weights']:,} | {r['mismatches']} | "
              f"{r['ours_ms']:.1f} / {r['torch_ms']:.1f} ms ({r['ours_ms'] / r['torch_ms']:.2f}x) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("curve", "structured", "masks"), required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if args.only == "curve":
        result, show = curve(args.device, args.fine_tune_epochs, args.rounds), print_curve
    elif args.only == "structured":
        result, show = structured(args.fine_tune_epochs), print_structured
    else:
        result, show = masks(), print_masks
    _save(args.only, result)
    show(result)


def _save(part: str, result: dict) -> None:
    """Written as each row finishes, so a run cut short keeps what it measured."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"prune_{part}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
