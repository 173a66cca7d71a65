"""Pieces shared by the CLI's command modules: data loading with usage errors, number formatting, options."""

from __future__ import annotations

import click

from kdscope.data import ImageSet, load_dataset

image_size_option = click.option(
    "--image-size", type=click.IntRange(8), default=None,
    help="Square image side: folders of mixed sizes are resized to it; ProbeWorld and digits render at it.")


def fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as error:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from error


def load_data(spec: str, split: str, n: int | None, size: int | None, seed: int) -> ImageSet:
    try:
        return load_dataset(spec, split=split, n=n, size=size, seed=seed)
    except (ValueError, FileNotFoundError, KeyError, TypeError) as error:
        raise click.UsageError(str(error)) from error
