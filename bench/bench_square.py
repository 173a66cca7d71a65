"""Square attack (Linf): success rate against the query budget for several `p_init`, and torchattacks' Square.

    python bench/bench_square.py            # trains a tiny ResNet on ProbeWorld 32x32, then attacks (3 min, 2 cores)
    python bench/bench_square.py --images 64 --seeds 1    # quicker

`p_init` is the fraction of the image the first squares cover; it halves on the paper's schedule, rescaled to the
budget. Each budget is a separate run (the schedule depends on it) on the same correctly classified test images. A
budget of q counts every model call per image, the initial stripes included, so torchattacks runs with
n_queries = q - 1 (it makes one call before its q - 1 iterations). Writes bench/results/square.json and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from kdscope import Subject, zoo
from kdscope.attacks import run
from kdscope.core.checkpoint import library_versions
from kdscope.core.subject import RawInputModel
from kdscope.data import probeworld
from kdscope.train import TrainConfig, train
from timing import cpu_model

RESULTS = Path(__file__).parent / "results"
BUDGETS = (100, 300, 1000)
P_INITS = (0.05, 0.1, 0.3, 0.8)


def tiny_model(size: int = 32, train_images: int = 4000, epochs: int = 8) -> tuple[Subject, float, dict]:
    """A tiny ResNet (width 4, one block per stage) trained from seed 0 on ProbeWorld, without augmentation."""
    train_set = probeworld(train_images, split="train", size=size)
    model = zoo.build("resnet", 10, seed=0, width=4, blocks=1)
    mean, std = train_set.channel_stats()
    start = time.perf_counter()
    train(model, train_set, TrainConfig(epochs=epochs, seed=0), progress=False)
    recipe = {"arch": "resnet", "width": 4, "blocks": 1, "size": size, "train_images": train_images, "epochs": epochs}
    return Subject(model, name="tiny_resnet", mean=mean, std=std), time.perf_counter() - start, recipe


def measure(images: int = 100, eps: float = 4 / 255, seeds: int = 2) -> dict:
    import torchattacks

    subject, train_seconds, recipe = tiny_model()
    test_set = probeworld(4 * images, split="test", size=recipe["size"])
    x, y = test_set.images(slice(0, 4 * images)), test_set.targets(slice(0, 4 * images))
    accuracy = float((subject.predict(x) == y).float().mean())
    correct = subject.predict(x) == y
    x, y = x[correct][:images], y[correct][:images]
    peer_model = RawInputModel(subject).eval()
    rows = []

    def record(name: str, budget: int, rates: list[float], seconds: float, queries: float | None) -> None:
        rows.append({"attack": name, "budget": budget, "success": statistics.mean(rates), "per_seed": rates,
                     "seconds": seconds, "mean_queries_used": queries})
        print(json.dumps(rows[-1]), flush=True)

    for budget in BUDGETS:
        for p_init in P_INITS:
            rates, used, start = [], [], time.perf_counter()
            for seed in range(seeds):
                result = run(subject, x, y, attack="square", eps=eps, queries=budget, p_init=p_init, seed=seed)
                rates.append(result.success_rate)
                used.append(statistics.mean(result.params["queries_used"]))
            record(f"kdscope p_init={p_init}", budget, rates, (time.perf_counter() - start) / seeds,
                   statistics.mean(used))
        rates, start = [], time.perf_counter()
        for seed in range(seeds):
            attack = torchattacks.Square(peer_model, norm="Linf", eps=eps, n_queries=budget - 1, p_init=0.8,
                                         loss="margin", resc_schedule=True, seed=seed)
            adversarial = attack(x, y)
            rates.append(float((subject.predict(adversarial) != y).float().mean()))
        record("torchattacks Square p_init=0.8", budget, rates, (time.perf_counter() - start) / seeds, None)
    return {"rows": rows, "images": len(x), "eps": eps, "seeds": seeds, "clean_accuracy": accuracy,
            "model": recipe, "train_seconds": train_seconds, "cpu": cpu_model(),
            "threads": torch.get_num_threads(),
            "versions": {**library_versions(), "torchattacks": torchattacks.__version__}}


def show(result: dict) -> None:
    print(f"\n{result['cpu']}, {result['threads']} threads; tiny ResNet on ProbeWorld {result['model']['size']}x"
          f"{result['model']['size']} (clean accuracy {result['clean_accuracy']:.1%}, trained in "
          f"{result['train_seconds']:.0f} s); {result['images']} correctly classified test images, Linf eps "
          f"{result['eps'] * 255:.0f}/255, success averaged over {result['seeds']} seeds\n")
    names = list(dict.fromkeys(r["attack"] for r in result["rows"]))
    print("| attack | " + " | ".join(f"{b} queries" for b in BUDGETS) + " | time at 1000 |")
    print("|---" * (len(BUDGETS) + 2) + "|")
    for name in names:
        cells = {r["budget"]: r for r in result["rows"] if r["attack"] == name}
        print(f"| {name} | " + " | ".join(f"{cells[b]['success']:.1%}" for b in BUDGETS)
              + f" | {cells[BUDGETS[-1]]['seconds']:.1f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--eps", type=float, default=4 / 255)
    args = parser.parse_args()
    torch.set_num_threads(2)
    result = measure(args.images, args.eps, args.seeds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "square.json").write_text(json.dumps(result, indent=2))
    show(result)


if __name__ == "__main__":
    main()
