"""`kdscope explain` (maps as a PNG grid + JSON) and `kdscope sanity` (randomisation checks + localisation)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click
import cv2
import numpy as np
import torch

from kdscope.cli.common import ModelSource, image_size_option, load_data, model_source_options

DEFAULT_SANITY_METHODS = "gradient,guided_backprop,gradcam,guided_gradcam"


def _methods(text: str) -> list[str]:
    from kdscope.explainers import METHODS

    chosen = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise click.BadParameter(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}", param_hint="--methods")
    return chosen


model_option = click.option("--model", "reference", required=True, help="Any model reference `evaluate` takes.")
data_option = click.option("--data", "data_spec", default="probeworld", show_default=True)
out_option = click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)


@click.command("explain")
@model_option
@data_option
@click.option("--methods", default="gradient,guided_backprop,gradcam,occlusion", show_default=True)
@click.option("--n", type=click.IntRange(1, 64), default=8, show_default=True, help="Images explained.")
@image_size_option
@click.option("--seed", default=0, show_default=True)
@model_source_options
@out_option
def explain_command(reference: str, data_spec: str, methods: str, n: int, image_size: int | None, seed: int,
                    source: ModelSource, out: Path) -> None:
    """Explain each image's true class with every method; writes OUT/explanations.png and OUT/explanations.json."""
    from kdscope.explainers import explain
    from kdscope.explainers.display import normalize_maps
    from kdscope.explainers.sanity import localisation_of

    chosen = _methods(methods)
    subject = source.load(reference)
    data = source.fit([subject], load_data(data_spec, "test", n, image_size, seed))
    x, y = data.images(), data.targets()
    report = {"model": subject.name, "data": data.description, "images": len(x), "methods": {}}
    columns = [[_tile(image) for image in x]]
    try:
        for method in chosen:
            explanation = explain(subject, x, y, method=method)
            (scaled,) = normalize_maps([explanation.maps_2d.abs()])
            columns.append([_tile(x[i], scaled[i]) for i in range(len(x))])
            entry = {"produced_by": explanation.produced_by, "params": explanation.params}
            if data.masks is not None:
                scores = localisation_of(explanation.maps_2d, torch.from_numpy(data.masks))
                entry.update({k: list(v) for k, v in scores.items()})
            report["methods"][method] = entry
    except (ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
    out.mkdir(parents=True, exist_ok=True)
    grid = np.concatenate([np.concatenate(column, axis=0) for column in columns], axis=1)
    cv2.imwrite(str(out / "explanations.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    (out / "explanations.json").write_text(json.dumps(report, indent=2))
    click.echo(f"columns: image, {', '.join(chosen)} (|map|, one 99th-percentile scale per method)")
    for method, entry in report["methods"].items():
        if "pointing_game" in entry:
            click.echo(f"{method:<18} pointing game {entry['pointing_game'][0]:.0%}, relevance mass "
                       f"{entry['relevance_mass'][0]:.2f}")
    click.echo(f"wrote {out / 'explanations.png'} and {out / 'explanations.json'}")


def _tile(image: torch.Tensor, heat: torch.Tensor | None = None, scale: int = 4) -> np.ndarray:
    from kdscope.explainers.display import overlay

    rgb = overlay(image, heat, alpha=0.6) if heat is not None else overlay(image, torch.zeros(image.shape[1:]),
                                                                           alpha=0.0)
    return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


@click.command("sanity")
@model_option
@data_option
@click.option("--methods", default=DEFAULT_SANITY_METHODS, show_default=True)
@click.option("--kind", type=click.Choice(["cascading", "independent"]), default="cascading", show_default=True)
@click.option("--random-label-model", default=None,
              help="Same architecture trained on permuted labels (e.g. on probeworld:random_labels): adds the data "
                   "randomisation test.")
@click.option("--n", type=click.IntRange(2), default=32, show_default=True, help="Images compared.")
@image_size_option
@click.option("--seed", default=0, show_default=True)
@model_source_options
@out_option
def sanity_command(reference: str, data_spec: str, methods: str, kind: str, random_label_model: str | None, n: int,
                   image_size: int | None, seed: int, source: ModelSource, out: Path) -> None:
    """Adebayo et al.'s randomisation checks per method; writes OUT/sanity.json and prints the verdicts."""
    from kdscope.explainers.sanity import (
        PASS_THRESHOLD,
        cascading_randomization,
        data_randomization,
        independent_randomization,
    )

    chosen = _methods(methods)
    subject = source.load(reference)
    control = replace(source, weights=None).load(random_label_model) if random_label_model else None
    data = source.fit([subject, *([control] if control else [])], load_data(data_spec, "test", n, image_size, seed))
    x, y = data.images(), data.targets()
    check = cascading_randomization if kind == "cascading" else independent_randomization
    results = []
    try:
        for method in chosen:
            results.append(check(subject, x, y, method=method, seed=seed).to_dict())
            if control is not None:
                results.append(data_randomization(subject, control, x, y, method=method).to_dict())
    except (ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
    out.mkdir(parents=True, exist_ok=True)
    (out / "sanity.json").write_text(json.dumps({"model": subject.name, "data": data.description, "images": len(x),
                                                 "results": results}, indent=2))
    click.echo(f"Spearman |map| similarity to the trained model's maps (pass: below {PASS_THRESHOLD} when "
               "everything is randomised)")
    for result in results:
        last = result["steps"][-1]["similarity"]["spearman_abs"]
        click.echo(f"{result['method']:<18}{result['kind']:<13}{last[0]:+.2f} [{last[1]:+.2f}, {last[2]:+.2f}]  "
                   f"{result['verdict'] or '-'}")
    click.echo(f"wrote {out / 'sanity.json'}")
