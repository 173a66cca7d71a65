"""The demo: a colour-jitter-trained ResNet teacher and a narrow student trained alone on ProbeWorld.

Checkpoints are cached in the output folder and reused when their recorded recipe matches; `fresh=True` retrains.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kdscope import zoo
from kdscope.augment import Augment
from kdscope.checkpoint import checkpoint_paths, read_metadata
from kdscope.data import probeworld
from kdscope.loading import load_subject
from kdscope.stats import bootstrap_ci
from kdscope.train import TrainConfig, train


@dataclass(frozen=True)
class DemoModel:
    name: str
    role: str
    arch: str
    arch_kwargs: dict
    config: TrainConfig


@dataclass(frozen=True)
class DemoRecipe:
    """Everything the demo trains; also what bench/bench_foundation.py measures."""

    train_images: int = 8000
    test_images: int = 2000
    seed: int = 0
    models: tuple[DemoModel, ...] = field(default_factory=lambda: (
        DemoModel("teacher", "teacher", "resnet", {"width": 16, "blocks": 1},
                  TrainConfig(epochs=20, lr=0.05, augment=Augment.colour_jitter())),
        DemoModel("student_alone", "independent_student", "student", {"width": 5, "blocks": 2},
                  TrainConfig(epochs=20, lr=0.05, augment=Augment.colour_jitter())),
    ))


def run_demo(out: str | Path = "runs/demo", *, fresh: bool = False, progress: bool = True,
             recipe: DemoRecipe | None = None) -> dict[str, dict]:
    """Train (or reuse) every demo model; returns {name: {"accuracy", "accuracy_ci", "correct" (per test image),
    "seconds", "checkpoint", "cached"}}."""
    out, recipe = Path(out), recipe or DemoRecipe()
    train_data = probeworld(recipe.train_images, split="train", seed=recipe.seed)
    test_data = probeworld(recipe.test_images, split="test", seed=recipe.seed)
    summary = {}
    for spec in recipe.models:
        path = out / f"{spec.name}.pt"
        cached = not fresh and _matches(path, spec, train_data.description)
        if cached:
            subject = load_subject(path)
            seconds = read_metadata(path)["train_seconds"]
        else:
            model = zoo.build(spec.arch, train_data.num_classes, seed=spec.config.seed, **spec.arch_kwargs)
            result = train(model, train_data, spec.config, eval_data=test_data, checkpoint=path,
                           progress=progress, name=spec.name, role=spec.role)
            subject, seconds = load_subject(path), result.seconds
        correct = (subject.predict(test_data.images()) == test_data.targets()).numpy()
        accuracy, low, high = bootstrap_ci(correct)
        summary[spec.name] = {"role": spec.role, "accuracy": accuracy, "accuracy_ci": [low, high],
                              "correct": correct, "seconds": seconds, "checkpoint": str(path), "cached": cached}
    return summary


def accuracy_gap(better: dict, worse: dict) -> tuple[float, float, float]:
    """Paired difference in accuracy (same test images) with its bootstrap interval."""
    return bootstrap_ci(better["correct"].astype(float) - worse["correct"].astype(float))


def _matches(path: Path, spec: DemoModel, data_description: dict) -> bool:
    """A cached checkpoint is reused only if it was trained by this exact recipe on this exact data."""
    if not checkpoint_paths(path)[0].exists():
        return False
    try:
        meta = read_metadata(path)
    except (FileNotFoundError, ValueError):
        return False
    expected = json.loads(json.dumps(asdict(spec.config)))
    return (meta.get("train_config") == expected and meta.get("data") == data_description and
            meta.get("arch", {}).get("kwargs", {}).items() >= spec.arch_kwargs.items() and
            meta.get("arch", {}).get("name") == spec.arch)

