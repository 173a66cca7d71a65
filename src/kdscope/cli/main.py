"""The `kdscope` command: thin wrappers that parse, call the Python API and print."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kdscope import zoo
from kdscope.cli.attack import attack_command
from kdscope.cli.audit import audit_command, demo_command, report_command
from kdscope.cli.common import ModelSource, image_size_option, load_data, model_source_options
from kdscope.cli.compress import compress
from kdscope.cli.explain import explain_command, sanity_command
from kdscope.core.version import __version__
from kdscope.data import VARIANTS
from kdscope.data.augment import Augment
from kdscope.data.preview import preview_grid, save_png
from kdscope.reports.formatting import number
from kdscope.train import TrainConfig, train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kdscope")
def main() -> None:
    """kdscope: build compressed versions of a teacher model and audit what each one kept."""


@main.group()
def data() -> None:
    """Inspect datasets."""


@data.command("preview")
@click.option("--data", "data_spec", default="probeworld", show_default=True,
              help="probeworld, digits, a folder of class sub-folders, or an .npz file.")
@click.option("--variants", default="all", show_default=True,
              help=f"ProbeWorld variants to show, comma-separated, or 'all' ({', '.join(VARIANTS)}).")
@click.option("--columns", default=10, show_default=True, type=click.IntRange(1, 64))
@click.option("--seed", default=0, show_default=True)
@image_size_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("preview.png"),
              show_default=True)
def data_preview(data_spec: str, variants: str, columns: int, seed: int, image_size: int | None, out: Path) -> None:
    """Write a PNG grid of a dataset (and ProbeWorld's variants), with ground-truth masks outlined."""
    if data_spec == "probeworld":
        chosen = VARIANTS if variants == "all" else tuple(v.strip() for v in variants.split(","))
        unknown = [v for v in chosen if v not in VARIANTS]
        if unknown:
            raise click.BadParameter(f"unknown variant(s) {unknown}; choose from {VARIANTS}", param_hint="--variants")
        rows = {v: load_data(f"probeworld:{v}", "test", columns, image_size, seed) for v in chosen}
    else:
        rows = {data_spec: load_data(data_spec, "test", columns, image_size, seed)}
    click.echo(save_png(out, preview_grid(rows, columns=columns)))


@main.command("train")
@click.option("--arch", type=click.Choice(sorted(zoo.ARCHITECTURES)), required=True)
@click.option("--width", type=click.IntRange(1), default=None, help="Base channel width (architecture default).")
@click.option("--data", "data_spec", default="probeworld", show_default=True)
@click.option("--eval-data", "eval_spec", default=None, help="Evaluation data (default: the test split of --data).")
@click.option("--n-train", type=click.IntRange(1), default=None, help="Cap on training images.")
@image_size_option
@click.option("--epochs", type=click.IntRange(1), default=12, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True)
@click.option("--label-smoothing", type=float, default=0.0, show_default=True)
@click.option("--grad-clip", type=float, default=None)
@click.option("--colour-jitter/--no-colour-jitter", default=False, show_default=True,
              help="Colour jitter (any hue) + random crop + flip.")
@click.option("--seed", default=0, show_default=True)
@click.option("--name", default=None, help="Model name (default: the architecture).")
@click.option("--role", default="other", show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def train_command(arch: str, width: int | None, data_spec: str, eval_spec: str | None, n_train: int | None,
                  image_size: int | None, epochs: int, batch_size: int, optimizer: str, lr: float,
                  label_smoothing: float, grad_clip: float | None, colour_jitter: bool, seed: int,
                  name: str | None, role: str, resume: bool, quiet: bool, out: Path) -> None:
    """Train a zoo architecture and write OUT/NAME.pt + OUT/NAME.json."""
    train_data = load_data(data_spec, "train", n_train, image_size, seed)
    eval_data = load_data(eval_spec or data_spec, "test", None, image_size, seed)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                         label_smoothing=label_smoothing, grad_clip=grad_clip, seed=seed,
                         augment=Augment.colour_jitter() if colour_jitter else Augment())
    kwargs = {"width": width} if width else {}
    model = zoo.build(arch, train_data.num_classes, seed=seed, in_channels=train_data.image_shape[0], **kwargs)
    name = name or arch
    result = train(model, train_data, config, eval_data=eval_data, checkpoint=out / f"{name}.pt", resume=resume,
                   progress=not quiet, name=name, role=role)
    click.echo(json.dumps({"checkpoint": str(out / f"{name}.pt"), **result.metrics,
                           "seconds": round(result.seconds, 1)}))


@main.command("evaluate")
@click.option("--model", "reference", required=True,
              help="kdscope checkpoint, TorchScript file, .pt2 export archive, or package.module:function.")
@model_source_options
@click.option("--data", "data_spec", default="probeworld", show_default=True)
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--n", type=click.IntRange(1), default=None, help="Cap on images (a seeded sample, stratified by class).")
@image_size_option
def evaluate_command(reference: str, source: ModelSource, data_spec: str, split: str, n: int | None,
                     image_size: int | None) -> None:
    """Load any model as a Subject and print its accuracy with a 95% bootstrap interval, on data whose classes
    are matched to the model's by name."""
    from kdscope.core.stats import bootstrap_ci
    from kdscope.data.sampling import stratified_sample

    rendered = n if data_spec.partition(":")[0] == "probeworld" else None
    data_set = load_data(data_spec, split, rendered, image_size, 0)
    subject = source.load(reference)
    data_set = source.fit([subject], data_set)
    if n is not None:
        data_set = data_set.subset(stratified_sample(data_set.labels, n, 0))
    try:
        correct = (subject.predict(data_set.images()) == data_set.targets()).numpy()
    except (ValueError, TypeError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
    accuracy, low, high = bootstrap_ci(correct)
    click.echo(json.dumps({"model": subject.name, "data": data_spec, "n": len(correct), "accuracy": accuracy,
                           "accuracy_ci95": [low, high], "class_order": data_set.description.get("class_order")}))


@main.command("models")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
def models_command(folder: Path) -> None:
    """List the kdscope models in FOLDER with accuracy, size and latency (from their metadata); a checkpoint that
    cannot be read is listed with the reason below the table rather than stopping the listing."""
    from kdscope.core.checkpoint import read_metadata

    rows, problems = [], []
    for meta_path in sorted(folder.glob("*.json")):
        try:
            meta = read_metadata(meta_path)
        except ValueError:
            continue
        except OSError as error:
            problems.append(f"{meta_path.name}: cannot read it ({error.strerror or error})")
            continue
        lineage = meta.get("lineage") or {}
        metrics = lineage.get("metrics") or meta.get("metrics") or {}
        weights = next((p for p in (meta_path.with_suffix(".pt"), meta_path.with_suffix(".pt2")) if p.exists()),
                       None)
        if weights is None:
            continue
        parameters = metrics.get("parameters")
        if parameters is None:
            parameters, problem = _parameter_count(weights)
            problems += [f"{weights.name}: parameters not counted: {problem}"] if problem else []
        rows.append((meta.get("name", meta_path.stem), meta.get("role", "?"), lineage.get("method", "train"),
                     lineage.get("parent", "-"), metrics.get("accuracy"), parameters, metrics.get("sparsity"),
                     weights.stat().st_size, metrics.get("cpu_latency_ms")))
    if not rows:
        raise click.ClickException(f"no kdscope checkpoints (NAME.pt + NAME.json) in {folder}")
    click.echo(f"{'model':<28}{'role':<21}{'method':<28}{'parent':<18}{'accuracy':>9}{'params':>10}{'sparsity':>9}"
               f"{'file KB':>9}{'latency ms':>11}")
    for name, role, method, parent, accuracy, params, sparsity, size, latency in rows:
        click.echo(f"{name:<28}{role:<21}{method:<28}{str(parent)[:17]:<18}{number(accuracy, '.2%'):>9}"
                   f"{number(params, ',d'):>10}{number(sparsity, '.0%'):>9}{number(size and size / 1024, '.1f'):>9}"
                   f"{number(latency, '.2f'):>11}")
    for problem in problems:
        click.echo(problem, err=True)


def _parameter_count(weights: Path) -> tuple[int | None, str | None]:
    """(parameters, None), or (None, why) for a file that cannot be loaded safely: one bad checkpoint must not
    hide the others in the listing."""
    from kdscope.store.loading import load_subject

    try:
        return sum(p.numel() for p in load_subject(weights).model.parameters()), None
    except (ValueError, TypeError, KeyError, OSError, RuntimeError, ImportError) as error:
        return None, str(error).splitlines()[0] if str(error) else type(error).__name__


main.add_command(compress)
main.add_command(attack_command)
main.add_command(explain_command)
main.add_command(sanity_command)
main.add_command(audit_command)
main.add_command(report_command)
main.add_command(demo_command)

if __name__ == "__main__":
    sys.exit(main())
