"""Pieces shared by the CLI's command modules: data loading with usage errors, number formatting, options, and
the one way every command loads a model and fits the data to it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from kdscope.data import ImageSet, load_dataset

image_size_option = click.option(
    "--image-size", type=click.IntRange(8), default=None,
    help="Square image side: folders of mixed sizes are resized to it; ProbeWorld and digits render at it.")


def floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as error:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from error


def load_data(spec: str, split: str, n: int | None, size: int | None, seed: int, *, lazy: bool = False) -> ImageSet:
    try:
        return load_dataset(spec, split=split, n=n, size=size, seed=seed, lazy=lazy)
    except (ValueError, FileNotFoundError, KeyError, TypeError) as error:
        raise click.UsageError(str(error)) from error


@dataclass(frozen=True)
class ModelSource:
    """How the user asked for models to be loaded: weights, normalisation, class names, trust."""

    weights: str | None = None
    random_weights: bool = False
    mean: list[float] | None = None
    std: list[float] | None = None
    class_names: tuple[str, ...] | None = None
    trust: bool = False
    output: str | None = None
    device: str = "cpu"

    def load(self, reference: str, *, role: str | None = None, weights: str | None = None,
             name: str | None = None):
        """A Subject, or a ClickException that says why not. --mean/--std apply where no normalisation is recorded;
        --weights that the model cannot use is an error, never ignored."""
        from kdscope.store.loading import load_subject

        try:
            return load_subject(reference, name=name, role=role, weights=weights or self.weights, trust=self.trust,
                                default_mean=self.mean, default_std=self.std,
                                random_weights=self.random_weights and not (weights or self.weights),
                                output=self.output, device=self.device)
        except (ValueError, TypeError, FileNotFoundError, RuntimeError, ImportError) as error:
            raise click.ClickException(f"cannot load {reference!r}: {error}") from error

    def fit(self, subjects: Sequence, data: ImageSet) -> ImageSet:
        """The data in the models' class order (by name), checked against every model before any work."""
        from kdscope.core.inputs import prepare_data

        try:
            return prepare_data(list(subjects), data, self.class_names)[0]
        except ValueError as error:
            raise click.UsageError(str(error)) from error


def named_reference(reference: str) -> tuple[str | None, str]:
    """'NAME=REF' names a model; a bare REF takes the name recorded in it or its file name."""
    name, sep, rest = reference.partition("=")
    return (name, rest) if sep and name.isidentifier() else (None, reference)


def weights_by_model(weight_files: tuple[str, ...], models: list[tuple[str | None, str]]) -> dict[str, str]:
    """Model reference -> its --weights file. `NAME=FILE` must name a model exactly; a bare FILE is allowed when
    exactly one model is a `module:function` factory. A --weights that matches no model is an error, never
    silently ignored (the model would be audited with random weights)."""
    names = {name: reference for name, reference in models if name}
    factories = [reference for _, reference in models if ":" in reference and not Path(reference).exists()]
    chosen: dict[str, str] = {}
    for item in weight_files:
        name, file = named_reference(item)
        if name is None:
            if len(factories) != 1:
                raise click.UsageError(f"--weights {item}: say which model it is for with NAME=FILE (models given "
                                       f"as module:function: {factories or 'none'})")
            reference = factories[0]
        elif name not in names:
            close = [n for n in names if n.lower() == name.lower()]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise click.UsageError(f"--weights {item}: no model is named {name!r}{hint}; name the model NAME=REF, "
                                   f"e.g. --model {name}=pkg.module:build --weights {name}=FILE. Named models: "
                                   f"{sorted(names) or 'none'}")
        else:
            reference = names[name]
        if reference in chosen:
            raise click.UsageError(f"two --weights for the same model {reference!r}")
        chosen[reference] = file
    return chosen


OUTPUT_OPTION = click.option(
    "--output", default=None, metavar="KEY",
    help="Where the logits are in what the model returns (a dict key or attribute); by default a tensor, a tuple's "
         "first element, or a 'logits' entry (HuggingFace).")
_SOURCE_OPTIONS = (
    click.option("--weights", default=None, metavar="FILE",
                 help="state_dict for a module:function model (its kdscope JSON beside it is read too)."),
    click.option("--random-weights", is_flag=True,
                 help="Run a module:function model given no --weights with its random initialisation, on purpose."),
    click.option("--mean", default=None, help="Per-channel mean for models that record none, comma-separated."),
    click.option("--std", default=None, help="Per-channel std for models that record none, comma-separated."),
    click.option("--class-names", default=None,
                 help="The model's classes in output order, comma-separated; folders are matched to them by name "
                      "(default: the names its checkpoint records)."),
    click.option("--trust-checkpoint", is_flag=True, help="Allow full unpickling (runs code from the file)."),
    OUTPUT_OPTION,
)


def model_source_options(command: Callable) -> Callable:
    """Add the model-loading options to a command, which receives them as one `source: ModelSource`."""

    @functools.wraps(command)
    def wrapper(*args: object, weights: str | None, random_weights: bool, mean: str | None, std: str | None,
                class_names: str | None, trust_checkpoint: bool, output: str | None, **kwargs: object) -> object:
        if weights is not None and not Path(weights).exists():
            raise click.BadParameter(f"{weights} does not exist", param_hint="--weights")
        names = tuple(n.strip() for n in class_names.split(",")) if class_names else None
        source = ModelSource(weights, random_weights, floats(mean), floats(std), names, trust_checkpoint, output)
        return command(*args, source=source, **kwargs)

    for option in reversed(_SOURCE_OPTIONS):
        wrapper = option(wrapper)
    return wrapper
