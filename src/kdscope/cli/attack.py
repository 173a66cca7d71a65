"""`kdscope attack`: craft on every model, evaluate on every model; the transfer matrix as JSON and CSV."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import click

from kdscope.attacks.fgsm import NORMS
from kdscope.attacks.registry import ATTACKS
from kdscope.attacks.transfer import TransferResult
from kdscope.cli.common import (
    OUTPUT_OPTION,
    ModelSource,
    floats,
    image_size_option,
    load_data,
    named_reference,
    weights_by_model,
)


def parse_eps(text: str) -> float:
    """eps in pixel units from "4/255" or "0.03"; a bare "8" is refused with the fix (write 8/255)."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError) as error:
        raise click.BadParameter(f"expected a number or a fraction like 4/255, got {text!r}") from error
    if value < 0:
        raise click.BadParameter(f"eps must be >= 0, got {text}")
    if value > 1:
        raise click.BadParameter(f"eps is in [0, 1] pixel units; for 8-bit steps write {text}/255")
    return value


@click.command("attack")
@click.option("--models", "first_models", multiple=True, required=True,
              help="Model references (checkpoint, TorchScript, .pt2, module:function; NAME=REF names one): "
                   "--models A B C")
@click.argument("more_models", nargs=-1)
@click.option("--attack", "attack_name", type=click.Choice(sorted(ATTACKS)),
              default="pgd", show_default=True)
@click.option("--eps", default="4/255", show_default=True, help="Linf (or L2 with --norm l2) budget, e.g. 4/255.")
@click.option("--norm", type=click.Choice(NORMS), default="linf", show_default=True, help="pgd only.")
@click.option("--steps", type=click.IntRange(1), default=10, show_default=True, help="pgd, cw, penalized.")
@click.option("--queries", type=click.IntRange(1), default=1000, show_default=True, help="square only.")
@click.option("--curve", default=None, help="Also robust accuracy per model at these eps, e.g. 1/255,2/255,4/255.")
@click.option("--round-8bit", is_flag=True, help="Round adversarial images to k/255 before evaluating them.")
@click.option("--data", "data_spec", default="probeworld", show_default=True)
@click.option("--n", type=click.IntRange(1), default=256, show_default=True, help="Images attacked.")
@image_size_option
@click.option("--seed", default=0, show_default=True)
@click.option("--weights", "weight_files", multiple=True, metavar="NAME=FILE",
              help="state_dict for the module:function model given as NAME=pkg.module:fn (a bare FILE when only one "
                   "model is module:function).")
@click.option("--random-weights", is_flag=True,
              help="Attack module:function models given no --weights with their random initialisation, on purpose.")
@click.option("--mean", default=None, help="Per-channel mean for models that record none, comma-separated.")
@click.option("--std", default=None, help="Per-channel std for models that record none, comma-separated.")
@click.option("--class-names", default=None, help="The models' classes in output order, comma-separated.")
@click.option("--trust-checkpoint", is_flag=True, help="Allow full unpickling of model files.")
@OUTPUT_OPTION
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def attack_command(first_models: tuple[str, ...], more_models: tuple[str, ...], attack_name: str, eps: str,
                   norm: str, steps: int, queries: int, curve: str | None, round_8bit: bool, data_spec: str, n: int,
                   image_size: int | None, seed: int, weight_files: tuple[str, ...], random_weights: bool,
                   mean: str | None, std: str | None, class_names: str | None, trust_checkpoint: bool,
                   output: str | None, out: Path) -> None:
    """Attack every model and evaluate each attack on every other; writes OUT/transfer.json and OUT/transfer.csv."""
    from kdscope.attacks import robust_accuracy_curve, transfer_matrix

    references = [named_reference(reference) for reference in list(first_models) + list(more_models)]
    params = _attack_params(attack_name, parse_eps(eps), norm, steps, queries, seed)
    names = tuple(c.strip() for c in class_names.split(",")) if class_names else None
    source = ModelSource(None, random_weights, floats(mean), floats(std), names, trust_checkpoint, output)
    weights = weights_by_model(weight_files, references)
    subjects = [source.load(target, name=name, weights=weights.get(target)) for name, target in references]
    data = source.fit(subjects, load_data(data_spec, "test", n, image_size, seed))
    x, y = data.images(), data.targets()
    try:
        result = transfer_matrix(subjects, x, y, attack=attack_name, round_to_8bit=round_8bit, ci_seed=seed,
                                 **params)
        curves = {}
        if curve:
            eps_values = [parse_eps(value) for value in curve.split(",")]
            curve_params = {k: v for k, v in params.items() if k != "eps"}
            curves = {s.name: robust_accuracy_curve(s, x, y, eps_values, attack=attack_name, ci_seed=seed,
                                                    **curve_params) for s in subjects}
    except (ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
    out.mkdir(parents=True, exist_ok=True)
    report = {**result.to_dict(), "data": data.description, "images": len(x), "robust_accuracy": curves}
    (out / "transfer.json").write_text(json.dumps(report, indent=2))
    _write_csv(out / "transfer.csv", result)
    _print_matrix(result)
    click.echo(f"\nwrote {out / 'transfer.json'} and {out / 'transfer.csv'}")


def _attack_params(attack: str, eps: float, norm: str, steps: int, queries: int, seed: int) -> dict:
    if attack == "fgsm":
        return {"eps": eps}
    if attack == "pgd":
        return {"eps": eps, "norm": norm, "steps": steps, "seed": seed}
    if attack == "square":
        return {"eps": eps, "queries": queries, "seed": seed}
    return {"steps": steps}


def _write_csv(path: Path, result: TransferResult) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "target"] + [f"{rate}{suffix}" for rate in ("conditional", "unconditional",
                                                                               "fooling")
                                                for suffix in ("", "_ci_low", "_ci_high")])
        for cell in result.cells:
            writer.writerow([cell.source, cell.target, *cell.conditional, *cell.unconditional, *cell.fooling])


def _print_matrix(result: TransferResult) -> None:
    width = max(12, *(len(name) + 2 for name in result.models))
    click.echo(f"conditional transfer rate [95% CI] (rows: crafted on, columns: evaluated on), attack "
               f"{result.attack} {result.params}")
    click.echo("".ljust(width) + "".join(name.rjust(24) for name in result.models))
    for source in result.models:
        cells = [result.cell(source, target).conditional for target in result.models]
        click.echo(source.ljust(width) + "".join(_rate(cell).rjust(24) for cell in cells))
    click.echo("white-box success: " + ", ".join(f"{k} {v:.1%}" for k, v in result.white_box_success.items()))


def _rate(cell: tuple[float, float, float]) -> str:
    estimate, low, high = cell
    return "-" if estimate != estimate else f"{estimate:.1%} [{low:.0%}, {high:.0%}]"
