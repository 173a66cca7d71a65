"""Attacks against their peers on this CPU, and the transfer matrix of the compressed models.

    python bench/bench_attacks.py --only throughput   # FGSM/PGD ours vs torchattacks, 256 images, timed in turn
    python bench/bench_attacks.py --only cw           # CW ours vs Foolbox vs torchattacks at one step budget
    python bench/bench_attacks.py --only transfer     # teacher / KD / independent / pruned / int8 / unrelated
Each part writes bench/results/attacks_PART.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from common import demo_setting
from kdscope import Subject, zoo
from kdscope.attacks import run, transfer_matrix
from kdscope.compress import distill
from kdscope.compress.prune import PruneConfig, prune
from kdscope.compress.quantize import QuantizeConfig, quantize
from kdscope.core.checkpoint import library_versions
from kdscope.core.stats import bootstrap_ci
from kdscope.core.subject import RawInputModel
from kdscope.demo import DemoRecipe
from kdscope.train import TrainConfig, train

RESULTS = Path(__file__).parent / "results"






def throughput(repeats: int = 7) -> dict:
    import torchattacks

    _, teacher, _, test_data = demo_setting()
    x, y = test_data.images(slice(0, 256)), test_data.targets(slice(0, 256))
    peer_model = RawInputModel(teacher).eval()
    peers = {"fgsm": torchattacks.FGSM(peer_model, eps=4 / 255),
             "pgd (10 steps)": torchattacks.PGD(peer_model, eps=4 / 255, alpha=1 / 255, steps=10, random_start=False)}
    ours = {"fgsm": lambda: run(teacher, x, y, attack="fgsm", eps=4 / 255),
            "pgd (10 steps)": lambda: run(teacher, x, y, attack="pgd", eps=4 / 255, step=1 / 255, steps=10,
                                          random_start=False)}

    def judged(peer):
        """torchattacks returns images only; this adds the forward pass that tells which attacks succeeded,
        which kdscope's result includes."""
        def call():
            adversarial = peer(x, y)
            with torch.no_grad():
                return adversarial, peer_model(adversarial).argmax(1) != y
        return call

    rows = []
    for name, peer in peers.items():
        timed = {"ours": ours[name], "torchattacks": lambda peer=peer: peer(x, y),
                 "ours + success": lambda name=name: ours[name]().success, "torchattacks + success": judged(peer)}
        for call in timed.values():
            call()
        times = {label: [] for label in timed}
        for _ in range(repeats):
            for label, call in timed.items():
                start = time.perf_counter()
                call()
                times[label].append(time.perf_counter() - start)
        row = {"attack": name, "images": len(x), "identical_images": torch.equal(ours[name]().adversarial, peer(x, y))}
        for label in timed:
            row[f"{label} s"] = statistics.median(times[label])
        for ours_label, peer_label in (("ours", "torchattacks"), ("ours + success", "torchattacks + success")):
            row[f"ratio {ours_label}"] = statistics.median(a / b for a, b in zip(times[ours_label], times[peer_label]))
        rows.append(row)
        print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows, "versions": {**library_versions(), "torchattacks": torchattacks.__version__}}


def carlini_wagner_peers(n: int = 64, steps: int = 100, binary_steps: int = 5) -> dict:
    import foolbox
    import torchattacks

    _, teacher, _, test_data = demo_setting()
    x, y = test_data.images(slice(0, 2 * n)), test_data.targets(slice(0, 2 * n))
    correct = teacher.predict(x) == y
    x, y = x[correct][:n], y[correct][:n]
    peer_model = RawInputModel(teacher).eval()
    rows = []

    def record(name: str, adversarial: torch.Tensor, seconds: float) -> None:
        success = (teacher.predict(adversarial) != y).numpy()
        l2 = (adversarial - x).flatten(1).norm(dim=1).numpy()
        rows.append({"attack": name, "success": float(success.mean()),
                     "median_l2_successful": float(np.median(l2[success])) if success.any() else None,
                     "seconds": seconds, "images": len(x)})
        print(json.dumps(rows[-1]), flush=True)

    fmodel = foolbox.PyTorchModel(peer_model, bounds=(0, 1))
    run(teacher, x[:2], y[:2], attack="cw", steps=2, binary_search_steps=1)
    foolbox.attacks.L2CarliniWagnerAttack(binary_search_steps=1, steps=2)(fmodel, x[:2], y[:2], epsilons=None)
    start = time.perf_counter()
    ours = run(teacher, x, y, attack="cw", steps=steps, binary_search_steps=binary_steps, lr=0.01,
               initial_const=1e-3)
    record(f"kdscope cw ({binary_steps} x {steps} steps)", ours.adversarial, time.perf_counter() - start)
    attack = foolbox.attacks.L2CarliniWagnerAttack(binary_search_steps=binary_steps, steps=steps, stepsize=0.01,
                                                   initial_const=1e-3)
    start = time.perf_counter()
    _, clipped, _ = attack(fmodel, x, y, epsilons=None)
    record(f"foolbox L2CarliniWagnerAttack ({binary_steps} x {steps} steps)", clipped.detach(),
           time.perf_counter() - start)
    start = time.perf_counter()
    theirs = torchattacks.CW(peer_model, c=1, kappa=0, steps=binary_steps * steps, lr=0.01)(x, y)
    record(f"torchattacks CW (c=1, {binary_steps * steps} steps, no search)", theirs, time.perf_counter() - start)
    return {"rows": rows, "versions": {**library_versions(), "foolbox": foolbox.__version__,
                                       "torchattacks": torchattacks.__version__}}


def compressed_models(recipe: DemoRecipe, teacher: Subject, train_data, test_data, *,
                      unrelated: bool = True) -> list[Subject]:
    """The KD student and its independent control (demo student recipe), a pruned and an int8 teacher, and an
    unrelated model (a VGG trained from scratch on the same data) for the control comparison."""
    student_spec = recipe.student
    student = zoo.build(student_spec.arch, 10, seed=0, **student_spec.arch_kwargs)
    kd = distill(teacher, train_data, student=student, train=student_spec.config, eval_data=test_data,
                 progress=False)
    pruned = prune(teacher, train_data, PruneConfig(0.8), eval_data=test_data, progress=False,
                   train=TrainConfig(epochs=10, lr=0.01, warmup_epochs=0,
                                     augment=student_spec.config.augment)).subject
    int8 = quantize(teacher, train_data, QuantizeConfig(), eval_data=test_data, progress=False).subject
    kd_student, independent = kd.subject, kd.control.subject
    independent.name = "independent"
    if not unrelated:
        return [teacher, kd_student, independent, pruned, int8]
    unrelated_model = zoo.build("vgg", 10, seed=7, width=16)
    mean, std = train_data.channel_stats()
    train(unrelated_model, train_data, dataclasses.replace(student_spec.config, seed=7), mean=mean, std=std,
          progress=False)
    vgg = Subject(unrelated_model, name="unrelated_vgg", role="other", mean=mean, std=std)
    return [teacher, kd_student, independent, pruned, int8, vgg]


def transfer(n: int = 1000, eps: float = 4 / 255) -> dict:
    recipe, teacher, train_data, test_data = demo_setting()
    subjects = compressed_models(recipe, teacher, train_data, test_data)
    x, y = test_data.images(slice(0, n)), test_data.targets(slice(0, n))
    result = transfer_matrix(subjects, x, y, attack="pgd", eps=eps, steps=10, seed=0)
    gaps = {source: _paired_gap(result, source) for source in ("teacher", "unrelated_vgg")}
    summary = result.to_dict()
    for cell in summary["cells"]:
        del cell["masks"]
    return {**summary, "ojha_gap_kd_minus_independent": gaps, "images": n,
            "accuracy": {s.name: float((s.predict(x) == y).float().mean()) for s in subjects},
            "versions": library_versions()}


def _paired_gap(result, source: str) -> dict:
    """Conditional transfer to the KD student minus to the independent student, same source and images; paired
    bootstrap over images of the difference of the two ratios."""
    kd, independent = result.cell(source, "kd_student"), result.cell(source, "independent")
    arrays = np.stack([np.array(kd.masks["conditional"]["numerator"]),
                       np.array(kd.masks["conditional"]["denominator"]),
                       np.array(independent.masks["conditional"]["numerator"]),
                       np.array(independent.masks["conditional"]["denominator"])], axis=1).astype(float)

    def difference(sample: np.ndarray) -> float:
        return sample[:, 0].sum() / max(sample[:, 1].sum(), 1) - sample[:, 2].sum() / max(sample[:, 3].sum(), 1)

    estimate, low, high = bootstrap_ci(arrays, difference)
    return {"estimate": estimate, "ci95": [low, high]}


def show(part: str, result: dict) -> None:
    if part == "throughput":
        print("\n| attack, 256 images | ours | torchattacks | ratio | ours + success | torchattacks + success check "
              "| ratio | identical images |")
        print("|---|---|---|---|---|---|---|---|")
        for r in result["rows"]:
            print(f"| {r['attack']} | {r['ours s']:.2f} s | {r['torchattacks s']:.2f} s | {r['ratio ours']:.2f} | "
                  f"{r['ours + success s']:.2f} s | {r['torchattacks + success s']:.2f} s | "
                  f"{r['ratio ours + success']:.2f} | {r['identical_images']} |")
    elif part == "cw":
        print("\n| attack | success | median L2 (successful) | wall time |")
        print("|---|---|---|---|")
        for r in result["rows"]:
            l2 = "-" if r["median_l2_successful"] is None else f"{r['median_l2_successful']:.3f}"
            print(f"| {r['attack']} | {r['success']:.1%} | {l2} | {r['seconds']:.1f} s |")
    else:
        models = result["models"]
        print("\naccuracy: " + ", ".join(f"{k} {v:.1%}" for k, v in result["accuracy"].items()))
        print("\n| crafted on \\ evaluated on | " + " | ".join(models) + " |")
        print("|---" * (len(models) + 1) + "|")
        for source in models:
            cells = [next(c for c in result["cells"] if c["source"] == source and c["target"] == target)
                     for target in models]
            print(f"| {source} | " + " | ".join(
                f"{c['conditional'][0]:.1%} [{c['conditional'][1]:.0%}, {c['conditional'][2]:.0%}]" for c in cells)
                  + " |")
        for source, gap in result["ojha_gap_kd_minus_independent"].items():
            print(f"\n{source} -> KD student minus {source} -> independent: {100 * gap['estimate']:+.1f} points "
                  f"[{100 * gap['ci95'][0]:+.1f}, {100 * gap['ci95'][1]:+.1f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("throughput", "cw", "transfer"), required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    result = {"throughput": throughput, "cw": carlini_wagner_peers, "transfer": transfer}[args.only]()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"attacks_{args.only}.json").write_text(json.dumps(result, indent=2))
    show(args.only, result)


if __name__ == "__main__":
    main()
