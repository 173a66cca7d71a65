"""`kdscope audit` (the user's own models and data, gated by --checks), `kdscope report` (the page from its JSON)
and `kdscope demo` (the whole loop on ProbeWorld)."""

from __future__ import annotations

import shutil
import sys
import time
import tomllib
from pathlib import Path

import click
import torch

from kdscope.cli.common import (
    OUTPUT_OPTION,
    ModelSource,
    floats,
    image_size_option,
    load_data,
    named_reference,
    weights_by_model,
)
from kdscope.core.inputs import ModelInputError
from kdscope.data.classes import ClassMismatchError


def read_plan_file(path: Path) -> tuple[dict, list[str]]:
    """(plan table, checks) from a TOML or YAML file; `checks` may sit in the file beside the plan keys."""
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            table = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            table = yaml.safe_load(text) or {}
        else:
            raise click.BadParameter(f"{path} is neither .toml nor .yaml/.yml", param_hint="--plan")
    except (tomllib.TOMLDecodeError, ValueError) as error:
        raise click.BadParameter(f"cannot parse {path}: {error}", param_hint="--plan") from error
    if not isinstance(table, dict):
        raise click.BadParameter(f"{path} must hold a table of plan settings", param_hint="--plan")
    checks = table.pop("checks", [])
    return table, [checks] if isinstance(checks, str) else list(checks)


def load_models(references: list[tuple[str, str | None]], weight_files: tuple[str, ...],
                source: ModelSource) -> list:
    """Subjects for (reference, role) pairs, each --weights matched to exactly one model, --mean/--std given to
    models that record no normalisation."""
    named = [(*named_reference(reference), role) for reference, role in references]
    weights = weights_by_model(weight_files, [(name, target) for name, target, _ in named])
    subjects = [source.load(target, name=name, role=role, weights=weights.get(target)) for name, target, role in named]
    names = [s.name for s in subjects]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise click.UsageError(f"two models are named {duplicated}; name them with NAME=PATH, e.g. "
                               f"--student kd=runs/kd/model.pt")
    return subjects


@click.command("audit")
@click.option("--teacher", required=True, help="The reference model: checkpoint, TorchScript, .pt2, or module:fn.")
@click.option("--student", "students", multiple=True, help="A distilled student (repeatable; NAME=REF to name it).")
@click.option("--control", "controls", multiple=True,
              help="The independent student: the student's architecture trained without the teacher.")
@click.option("--model", "others", multiple=True, help="Any other model to compare (pruned, int8, ...).")
@click.option("--weights", "weight_files", multiple=True, metavar="NAME=FILE",
              help="state_dict for the module:function model named NAME (a bare FILE when only one model is "
                   "module:function).")
@click.option("--random-weights", is_flag=True,
              help="Audit module:function models given no --weights with their random initialisation, on purpose.")
@click.option("--data", "data_spec", default="probeworld", show_default=True,
              help="A folder of class sub-folders, an .npz file, probeworld or digits.")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@image_size_option
@click.option("--class-names", default=None,
              help="The models' classes in output order, comma-separated; folders are matched to them by name "
                   "(default: the names the teacher's checkpoint records).")
@click.option("--plan", "plan_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="TOML or YAML plan: images, stages, explainers, attacks, cka_layers, ..., checks.")
@click.option("--images", type=click.IntRange(4), default=None, help="Audit images (overrides the plan).")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Images per batch (overrides the plan; default: chosen from the image size and the models).")
@click.option("--device", default="cpu", show_default=True,
              help="Where the models run: cpu, cuda, cuda:1 (int8 models stay on the CPU). Under torchrun each "
                   "rank takes the GPU of its LOCAL_RANK.")
@click.option("--checks", "check_texts", multiple=True,
              help="A gate such as 'cam_agreement >= 0.6' or 'int8_top1_agreement >= 99%' (repeatable).")
@click.option("--mean", default=None, help="Per-channel mean for models that record none, comma-separated.")
@click.option("--std", default=None, help="Per-channel std for models that record none, comma-separated.")
@click.option("--trust-checkpoint", is_flag=True, help="Allow full unpickling (runs code from the file).")
@OUTPUT_OPTION
@click.option("--fresh", is_flag=True, help="Ignore the stage cache of an earlier run in OUT.")
@click.option("--quiet", is_flag=True, help="No progress.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/audit"),
              show_default=True)
def audit_command(teacher: str, students: tuple[str, ...], controls: tuple[str, ...], others: tuple[str, ...],
                  weight_files: tuple[str, ...], random_weights: bool, data_spec: str, split: str,
                  image_size: int | None,
                  class_names: str | None, plan_path: Path | None, images: int | None, batch_size: int | None,
                  device: str, check_texts: tuple[str, ...], mean: str | None, std: str | None,
                  trust_checkpoint: bool, output: str | None, fresh: bool, quiet: bool, out: Path) -> None:
    """Audit the teacher against every other model; write OUT/index.html and OUT/results.json. Exits with 1 when
    a --checks gate fails, listing the failures. Images are read batch by batch; under
    `torchrun --nproc_per_node=N -m kdscope audit ...` each process audits its share of the batches and rank 0
    writes the report (the same as one process's)."""
    from kdscope.audit.distributed import torchrun_group

    try:
        torch_device = torch.device(device)
    except RuntimeError as error:
        raise click.BadParameter(f"{error}", param_hint="--device") from error
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine; use --device cpu", param_hint="--device")
    with torchrun_group(device) as rank_device:
        _audit(teacher, students, controls, others, weight_files, random_weights, data_spec, split, image_size,
               class_names, plan_path, images, batch_size, rank_device, check_texts, mean, std, trust_checkpoint,
               output, fresh, quiet, out)


def _audit(teacher: str, students: tuple[str, ...], controls: tuple[str, ...], others: tuple[str, ...],
           weight_files: tuple[str, ...], random_weights: bool, data_spec: str, split: str, image_size: int | None,
           class_names: str | None, plan_path: Path | None, images: int | None, batch_size: int | None,
           device: str, check_texts: tuple[str, ...], mean: str | None, std: str | None, trust_checkpoint: bool,
           output: str | None, fresh: bool, quiet: bool, out: Path) -> None:
    from kdscope.audit import Plan, audit
    from kdscope.audit.distributed import world
    from kdscope.reports import findings, write_report
    from kdscope.results.checks import evaluate_checks, failures, parse_check

    table, file_checks = read_plan_file(plan_path) if plan_path else ({}, [])
    if images is not None:
        table["images"] = images
    if batch_size is not None:
        table["batch_size"] = batch_size
    all_checks = [*file_checks, *check_texts]
    try:
        plan = Plan.from_mapping(table)
        for text in all_checks:
            parse_check(text)
    except (ValueError, TypeError) as error:
        raise click.UsageError(str(error)) from error
    references = [(teacher, "teacher"), *((r, "student") for r in students),
                  *((r, "independent_student") for r in controls), *((r, None) for r in others)]
    if len(references) == 1:
        raise click.UsageError("give at least one model to compare with the teacher (--student, --control, --model)")
    source = ModelSource(None, random_weights, floats(mean), floats(std), None, trust_checkpoint, output, device)
    subjects = load_models(references, weight_files, source)
    names = tuple(n.strip() for n in class_names.split(",")) if class_names else None
    rendered = plan.images if data_spec.partition(":")[0] == "probeworld" else None
    data = load_data(data_spec, split, rendered, image_size, 0, lazy=True)
    first = world()[0] == 0
    if fresh and first and (out / "cache").exists():
        shutil.rmtree(out / "cache")
    try:
        results = audit(subjects, data, plan, cache=out / "cache", progress=not quiet, class_names=names)
    except (ModelInputError, ClassMismatchError) as error:
        raise click.UsageError(str(error)) from error
    except (ValueError, TypeError, RuntimeError) as error:
        raise click.ClickException(f"the audit stopped: {error}. Finished stages are cached in {out / 'cache'}; "
                                   "rerun the same command to resume.") from error
    if not first:
        return
    results.checks = evaluate_checks(results, all_checks)
    results.meta = {"made_by": "kdscope audit", "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    html = write_report(results, out, overwrite=True)  # OUT is this audit's own folder: a rerun replaces it
    for line in findings(results):
        click.echo(f"- {line}")
    click.echo(f"report: {html.resolve()}")
    failed = failures(results.checks)
    if failed:
        click.echo("\n".join(failed), err=True)
        sys.exit(1)


@click.command("report")
@click.argument("results_path", metavar="RESULTS.json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("report.html"), show_default=True,
              help="An .html file (its JSON goes beside it, X.json), or a folder for index.html and results.json.")
@click.option("--force", is_flag=True, help="Replace a JSON file at the report's JSON path that holds other data.")
def report_command(results_path: Path, out: Path, force: bool) -> None:
    """Rebuild the HTML report from an audit's results.json alone."""
    from kdscope.reports import write_report
    from kdscope.reports.html import report_paths
    from kdscope.results.schema import Results

    try:
        results = Results.load(results_path)
    except (ValueError, TypeError) as error:
        raise click.ClickException(f"{results_path} is not kdscope results: {error}") from error
    try:
        html = write_report(results, out, overwrite=force)
    except FileExistsError as error:
        raise click.ClickException(
            f"{report_paths(out)[1]} already exists and holds something other than {results_path} (a checkpoint's "
            "metadata or another audit's results, perhaps): choose another --out, or pass --force to replace it"
        ) from error
    click.echo(html.resolve())


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True)
@click.option("--profile", type=click.Choice(["quick", "full"]), default="quick", show_default=True,
              help="quick: about 5 minutes on 2 CPU cores; full: more data, epochs and audit images (for a GPU).")
@click.option("--fresh", is_flag=True, help="Rebuild every model and rerun the audit instead of reusing the cache.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo_command(out: Path, profile: str, fresh: bool, quiet: bool) -> None:
    """Train ProbeWorld teachers, distil a student beside its controls, prune and quantize the teacher, audit every
    model and write the report."""
    from kdscope.demo import PROFILES, run_demo
    from kdscope.reports import findings

    outcome = run_demo(out, fresh=fresh, progress=not quiet, recipe=PROFILES[profile]())
    models = outcome.results.models
    name_width, role_width = (max(len(text) for text in column) + 2 for column in (
        ["model", *(m.name for m in models)], ["role", *(m.role for m in models)]))
    click.echo(f"\n{'model':<{name_width}}{'role':<{role_width}}{'accuracy [95% CI]':>24}  made by")
    predictions = outcome.results.stage("predictions")
    for model in models:
        mean, low, high = predictions.accuracy(model.name)
        click.echo(f"{model.name:<{name_width}}{model.role:<{role_width}}"
                   f"{f'{mean:.2%} [{low:.1%}, {high:.1%}]':>24}  {model.method or 'trained'}")
    click.echo("\nFindings:")
    for line in findings(outcome.results):
        click.echo(f"- {line}")
    steps = ", ".join(f"{name} {value:.0f} s" for name, value in outcome.step_seconds.items())
    reused = f"; reused from cache: {', '.join(outcome.cached_steps)}" if outcome.cached_steps else ""
    click.echo(f"\n{outcome.seconds:.0f} s in all ({steps}{reused}).\nOpen the report (works offline):\n"
               f"{outcome.html.resolve()}")
