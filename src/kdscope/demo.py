"""The demo: the whole compress → audit → report loop on ProbeWorld, made by kdscope itself, in a setting where
distillation is known to transfer (SPEC §12), so every transfer statistic is shown beside a real effect.

ProbeWorld with super-classes. A colour-jitter-trained ResNet teacher and a non-invariant one (T*, no hue jitter)
learn from every labelled training image. The narrow student has 10% of the labels and an unlabelled transfer split:
distilled from the teacher, and, from the same initial weights with the same batches, its controls: trained alone on
the labels (twice, from two initial weights: the second is the control of Ojha's CAM statistic), on the teacher's
argmax (pseudo-labels), and distilled from T*. Then the teacher pruned to 80% and fine-tuned, the teacher quantized
to int8, the audit of them all and the HTML report with its JSON.

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
from kdscope.compress.controls import matched_schedule
from kdscope.compress.quant_backend import WEIGHT_RANGE
from kdscope.core.checkpoint import checkpoint_paths, read_metadata
from kdscope.core.progress import progress_line
from kdscope.core.stats import bootstrap_ci
from kdscope.core.subject import Subject
from kdscope.core.version import __version__
from kdscope.data import probeworld
from kdscope.data.augment import Augment
from kdscope.data.imageset import ImageSet
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


def _crops() -> Augment:
    return Augment(crop_padding=2, flip=True)


@dataclass(frozen=True)
class DemoRecipe:
    """Everything the demo builds; also what the benches measure. `models` are trained from scratch on every
    labelled training image (the teacher first, then T*); `student` is distilled from the teacher on
    `labelled_fraction` of those labels plus `transfer_images` unlabelled ones, with its controls."""

    train_images: int = 8000
    labelled_fraction: float = 0.1
    label_noise: float = 0.0
    transfer_images: int = 8000
    test_images: int = 2000
    seed: int = 0
    models: tuple[DemoModel, ...] = field(default_factory=lambda: (
        DemoModel("teacher", "teacher", "resnet", {"width": 16, "blocks": 1},
                  TrainConfig(epochs=20, lr=0.05, augment=_jitter(), channels_last=True)),
        DemoModel("teacher_star", "other", "resnet", {"width": 16, "blocks": 1},
                  TrainConfig(epochs=20, lr=0.05, augment=_crops(), channels_last=True)),
    ))
    student: DemoModel = field(default_factory=lambda: DemoModel(
        "kd_student", "student", "student", {"width": 5, "blocks": 2},
        TrainConfig(epochs=20, lr=0.05, augment=_crops())))
    controls: tuple[str, ...] = ("independent", "pseudo_label", "other_teacher")
    kd: DistillConfig = field(default_factory=DistillConfig)
    sparsity: float = 0.8
    prune_fine_tune: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=3, lr=0.01, warmup_epochs=0, augment=_jitter(), channels_last=True))
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    plan: Plan = field(default_factory=lambda: Plan(images=256, robust_eps=(2 / 255, 4 / 255, 8 / 255),
                                                    robust_images=96))

    def world(self, split: str, n: int, **options: object) -> ImageSet:
        return probeworld(n, split=split, seed=self.seed, superclasses=True, **options)

    def data(self) -> dict[str, ImageSet]:
        """The teachers' training images, the students' labelled part of them, the transfer and the test split."""
        return {"train": self.world("train", self.train_images),
                "labelled": self.world("train", self.train_images, labelled_fraction=self.labelled_fraction,
                                       label_noise=self.label_noise),
                "transfer": self.world("transfer", self.transfer_images),
                "test": self.world("test", self.test_images)}
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
    data = recipe.data()
    train_data, test_data = data["train"], data["test"]
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
    if not fresh and recipe == DemoRecipe():
        unpack_shipped(out)
    trained = train_models(out, fresh=fresh, progress=progress, recipe=recipe)
    teacher, teacher_star = (load_subject(trained[m.name]["checkpoint"]) for m in recipe.models[:2])
    data = recipe.data()
    upstream = {name: _file_digest(row["checkpoint"]) for name, row in trained.items()}
    cached: list[str] = [name for name, row in trained.items() if row["cached"]]
    seconds = {name: row["seconds"] for name, row in trained.items() if not row["cached"]}

    def step(path: Path, recipe_part: object, build: Callable[[], object]) -> Subject:
        key = hashlib.sha256(json.dumps({"recipe": _jsonable(recipe_part), "upstream": upstream,
                                         "data": {k: v.description for k, v in data.items()}},
                                        sort_keys=True).encode()).hexdigest()
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

    spec = recipe.student
    student = zoo.build(spec.arch, data["labelled"].num_classes, seed=spec.config.seed, **spec.arch_kwargs)
    name = spec.name
    kd_student = step(out / f"{name}.pt", [spec, recipe.kd, recipe.controls], lambda: distill(
        teacher, data["labelled"], recipe.kd, student=student, train=spec.config, transfer=data["transfer"],
        controls=recipe.controls, other_teacher=teacher_star, eval_data=data["test"], out=out, name=name,
        progress=progress))
    controls = [load_subject(out / f"{name}_{control}.pt") for control in recipe.controls]
    second = step(out / f"{name}_independent_b.pt", [spec, "second initial weights"],
                  lambda: _second_independent(recipe, data, out / f"{name}_independent_b.pt", progress))
    pruned_name = f"{teacher.name}_pruned{round(recipe.sparsity * 100)}"
    pruned = step(out / f"{pruned_name}.pt", [recipe.sparsity, recipe.prune_fine_tune], lambda: prune(
        teacher, data["train"], PruneConfig(recipe.sparsity), train=recipe.prune_fine_tune, eval_data=data["test"],
        out=out, name=pruned_name, progress=progress))
    int8_recipe = [recipe.quantize, {"weight_range": WEIGHT_RANGE}]  # an archive of another weight range is rebuilt
    int8 = step(out / f"{teacher.name}_int8.pt2", int8_recipe, lambda: quantize(
        teacher, data["train"], recipe.quantize, eval_data=data["test"], out=out, progress=progress))
    began = time.perf_counter()
    results = audit([teacher, kd_student, *controls, second, teacher_star, pruned, int8], data["test"], recipe.plan,
                    cache=out / "audit", progress=progress)
    results.checks = evaluate_checks(results, recipe.checks)
    results.meta = {"kdscope_version": __version__, "made_by": "kdscope demo",
                    "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    html = write_report(results, out / "report", overwrite=True)
    seconds["audit and report"] = time.perf_counter() - began
    return DemoOutcome(trained, results, html, time.perf_counter() - start, cached, seconds)


SHIPPED = Path(__file__).parent / "demo_weights"
"""The default recipe's models as `kdscope demo --fresh` made them (the README gives the checksums), so that a first
`make demo` audits and reports at once instead of training for half an hour on two cores."""


def unpack_shipped(out: Path, shipped: Path = SHIPPED) -> list[str]:
    """Copy the shipped models into an output folder that lacks them; returns the files copied. They are reused
    only where their recipe and data match, as any cached step is: whatever does not match is trained."""
    if not shipped.is_dir():
        return []
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(shipped.iterdir()):
        if path.is_file() and not (out / path.name).exists():
            shutil.copyfile(path, out / path.name)
            copied.append(path.name)
    return copied


def _second_independent(recipe: DemoRecipe, data: dict[str, ImageSet], path: Path, progress: bool) -> None:
    """A second student trained alone, from other initial weights, with the first one's schedule: in the distilled
    student's place it gives Ojha's CAM statistic its control (about 50% when the test is fair)."""
    spec = recipe.student
    model = zoo.build(spec.arch, data["labelled"].num_classes, seed=spec.config.seed + 1, **spec.arch_kwargs)
    taught = len(data["labelled"]) + len(data["transfer"])
    mean, std = data["labelled"].channel_stats()
    train(model.to(recipe.device), data["labelled"], matched_schedule(spec.config, taught, len(data["labelled"])),
          eval_data=data["test"], mean=mean, std=std, checkpoint=path, progress=progress, name=path.stem,
          role="independent_student")


def accuracy_gap(better: dict, worse: dict) -> tuple[float, float, float]:
    """Paired difference in accuracy (same test images) with its bootstrap interval."""
    return bootstrap_ci(better["correct"].astype(float) - worse["correct"].astype(float))


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
