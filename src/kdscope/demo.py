"""The demo: the whole compress → audit → report loop on ProbeWorld, made by kdscope itself.

A colour-jitter-trained ResNet teacher and a narrow student trained alone (the control); the same student
architecture from the same initial weights distilled from the teacher; the teacher pruned to 80% and fine-tuned;
the teacher quantized to int8; the full audit of the five; the HTML report with its JSON.

Every step is cached in the output folder and reused when its recipe and its inputs match (`fresh=True` rebuilds);
the audit caches each finished stage, so an interrupted demo resumes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from kdscope import zoo
from kdscope.audit import Plan, audit
from kdscope.compress import DistillConfig, PruneConfig, QuantizeConfig, distill, prune, quantize
from kdscope.compress.quant_backend import WEIGHT_RANGE
from kdscope.core.checkpoint import checkpoint_paths, read_metadata
from kdscope.core.progress import progress_line
from kdscope.core.stats import bootstrap_ci
from kdscope.core.subject import Subject
from kdscope.core.version import __version__
from kdscope.data import probeworld
from kdscope.data.augment import Augment
from kdscope.reports import write_report
from kdscope.results.checks import evaluate_checks
from kdscope.results.schema import Results
from kdscope.store.loading import load_subject
from kdscope.train import TrainConfig, train


@dataclass(frozen=True)
class DemoModel:
    name: str
    role: str
    arch: str
    arch_kwargs: dict
    config: TrainConfig


def _jitter() -> Augment:
    return Augment.colour_jitter()


@dataclass(frozen=True)
class DemoRecipe:
    """Everything the demo builds; also what the benches measure. `models` are trained from scratch (the teacher
    first); the student alone is the independent control of the distilled student, which has its architecture,
    initial weights and schedule."""

    train_images: int = 8000
    test_images: int = 2000
    seed: int = 0
    models: tuple[DemoModel, ...] = field(default_factory=lambda: (
        DemoModel("teacher", "teacher", "resnet", {"width": 16, "blocks": 1},
                  TrainConfig(epochs=20, lr=0.05, augment=_jitter(), channels_last=True)),
        DemoModel("student_alone", "independent_student", "student", {"width": 5, "blocks": 2},
                  TrainConfig(epochs=20, lr=0.05, augment=_jitter())),
    ))
    kd: DistillConfig = field(default_factory=DistillConfig)
    sparsity: float = 0.8
    prune_fine_tune: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=3, lr=0.01, warmup_epochs=0, augment=_jitter(), channels_last=True))
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    plan: Plan = field(default_factory=lambda: Plan(images=256, robust_eps=(2 / 255, 4 / 255, 8 / 255),
                                                    robust_images=96))
    checks: tuple[str, ...] = ("int8_top1_agreement >= 0.99", "pruned_accuracy_drop <= 0.02",
                               "student_cam_agreement >= 0.6", "sanity_pass >= 0.5")
    device: str = "cpu"


PROFILES: dict[str, Callable[[], DemoRecipe]] = {
    "quick": DemoRecipe,
    "full": lambda: replace(
        DemoRecipe(), train_images=20000, test_images=5000, device="cuda" if torch.cuda.is_available() else "cpu",
        models=tuple(replace(m, config=replace(m.config, epochs=40)) for m in DemoRecipe().models),
        prune_fine_tune=replace(DemoRecipe().prune_fine_tune, epochs=10),
        plan=Plan(images=1000, robust_images=256)),
}


@dataclass
class DemoOutcome:
    trained: dict[str, dict]
    results: Results
    html: Path
    seconds: float
    cached_steps: list[str]
    step_seconds: dict[str, float]


def train_models(out: str | Path = "runs/demo", *, fresh: bool = False, progress: bool = True,
                 recipe: DemoRecipe | None = None) -> dict[str, dict]:
    """Train (or reuse) the from-scratch models; returns {name: {"accuracy", "accuracy_ci", "correct" (per test
    image), "seconds", "checkpoint", "cached"}}."""
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
            result = train(model.to(recipe.device), train_data, spec.config, eval_data=test_data, checkpoint=path,
                           progress=progress, name=spec.name, role=spec.role)
            subject, seconds = load_subject(path), result.seconds
        correct = (subject.predict(test_data.images()) == test_data.targets()).numpy()
        accuracy, low, high = bootstrap_ci(correct)
        summary[spec.name] = {"role": spec.role, "accuracy": accuracy, "accuracy_ci": [low, high],
                              "correct": correct, "seconds": seconds, "checkpoint": str(path), "cached": cached}
    return summary


def run_demo(out: str | Path = "runs/demo", *, fresh: bool = False, progress: bool = True,
             recipe: DemoRecipe | None = None) -> DemoOutcome:
    """The whole loop; writes OUT/report/index.html and OUT/report/results.json."""
    start = time.perf_counter()
    out, recipe = Path(out), recipe or DemoRecipe()
    if fresh and (out / "audit").exists():
        shutil.rmtree(out / "audit")
    trained = train_models(out, fresh=fresh, progress=progress, recipe=recipe)
    teacher_spec, student_spec = recipe.models[0], _control_spec(recipe)
    teacher = load_subject(trained[teacher_spec.name]["checkpoint"])
    control = load_subject(trained[student_spec.name]["checkpoint"])
    train_data = probeworld(recipe.train_images, split="train", seed=recipe.seed)
    test_data = probeworld(recipe.test_images, split="test", seed=recipe.seed)
    upstream = {name: _file_digest(row["checkpoint"]) for name, row in trained.items()}
    cached: list[str] = [name for name, row in trained.items() if row["cached"]]
    seconds = {name: row["seconds"] for name, row in trained.items() if not row["cached"]}

    def step(path: Path, recipe_part: object, build: Callable[[], object]) -> Subject:
        key = hashlib.sha256(json.dumps({"recipe": _jsonable(recipe_part), "upstream": upstream,
                                         "data": train_data.description}, sort_keys=True).encode()).hexdigest()
        key_path = path.with_suffix(".recipe")
        if not fresh and path.exists() and key_path.exists() and key_path.read_text() == key:
            cached.append(path.stem)
        else:
            if progress:
                progress_line(f"demo: building {path.name}")
            began = time.perf_counter()
            build()
            seconds[path.stem] = time.perf_counter() - began
            key_path.write_text(key)
        return load_subject(path)

    student = zoo.build(student_spec.arch, train_data.num_classes, seed=student_spec.config.seed,
                        **student_spec.arch_kwargs)
    kd_student = step(out / "kd_student.pt", [student_spec, recipe.kd], lambda: distill(
        teacher, train_data, recipe.kd, student=student, train=student_spec.config, control=False,
        eval_data=test_data, out=out, name="kd_student", progress=progress))
    pruned_name = f"{teacher.name}_pruned{round(recipe.sparsity * 100)}"
    pruned = step(out / f"{pruned_name}.pt", [recipe.sparsity, recipe.prune_fine_tune], lambda: prune(
        teacher, train_data, PruneConfig(recipe.sparsity), train=recipe.prune_fine_tune, eval_data=test_data,
        out=out, name=pruned_name, progress=progress))
    int8_recipe = [recipe.quantize, {"weight_range": WEIGHT_RANGE}]  # an archive of another weight range is rebuilt
    int8 = step(out / f"{teacher.name}_int8.pt2", int8_recipe, lambda: quantize(
        teacher, train_data, recipe.quantize, eval_data=test_data, out=out, progress=progress))
    began = time.perf_counter()
    results = audit([teacher, kd_student, control, pruned, int8], test_data, recipe.plan, cache=out / "audit",
                    progress=progress)
    results.checks = evaluate_checks(results, recipe.checks)
    results.meta = {"kdscope_version": __version__, "made_by": "kdscope demo",
                    "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    html = write_report(results, out / "report", overwrite=True)
    seconds["audit and report"] = time.perf_counter() - began
    return DemoOutcome(trained, results, html, time.perf_counter() - start, cached, seconds)


def accuracy_gap(better: dict, worse: dict) -> tuple[float, float, float]:
    """Paired difference in accuracy (same test images) with its bootstrap interval."""
    return bootstrap_ci(better["correct"].astype(float) - worse["correct"].astype(float))


def _control_spec(recipe: DemoRecipe) -> DemoModel:
    found = next((m for m in recipe.models if m.role == "independent_student"), None)
    if found is None:
        raise ValueError("the demo recipe needs a model with role 'independent_student' (the student trained alone)")
    return found


def _file_digest(path: str | Path) -> str:
    return hashlib.sha256(checkpoint_paths(path)[0].read_bytes()).hexdigest()


def _jsonable(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return json.loads(json.dumps(asdict(value), default=str))
    return value


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
