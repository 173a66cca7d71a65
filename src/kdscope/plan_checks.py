"""Type and range checks for every field of an audit plan, run when the plan is read: a wrong type in a TOML or
YAML file is an error naming the key, before any stage runs, never a raw Python error halfway through an audit."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

_NUMBER = (int, float)


def check_int(key: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"plan key {key!r} must be a whole number >= {minimum}, got {value!r}")


def check_names(key: str, value: object, choices: Sequence[str]) -> None:
    """A list of names, each one of `choices`."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"plan key {key!r} must be a list of names from {sorted(choices)}, got {value!r}")
    unknown = [v for v in value if v not in choices]
    if unknown:
        raise ValueError(f"plan key {key!r}: unknown {unknown}; choose from {sorted(choices)}")


def check_positive_numbers(key: str, value: object) -> None:
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, _NUMBER) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError(f"plan key {key!r} must be a non-empty list of positive numbers, got {value!r}")


def check_layers(value: object) -> None:
    """`cka_layers`: a table of model name -> 'auto' or a list of layer names."""
    if not isinstance(value, dict):
        raise ValueError(f"plan key 'cka_layers' must be a table of model name -> list of layer names (or 'auto'), "
                         f"got {value!r}")
    for model, layers in value.items():
        if layers != "auto" and (not isinstance(layers, (list, tuple)) or not all(isinstance(v, str) for v in layers)):
            raise ValueError(f"plan key 'cka_layers.{model}' must be 'auto' or a list of layer names, got {layers!r}")


def check_attack(index: int, config: object, attacks: dict[str, Callable]) -> None:
    """An attack table: a known 'attack' name and only parameters that attack takes, of the right type."""
    if not isinstance(config, dict) or config.get("attack") not in attacks:
        raise ValueError(f"plan key 'attacks[{index}]' must be a table with an 'attack' name from {sorted(attacks)} "
                         f"and its parameters, got {config!r}")
    name = config["attack"]
    parameters = {p.name: p for p in inspect.signature(attacks[name]).parameters.values()
                  if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "target"}
    for key, value in config.items():
        if key == "attack":
            continue
        if key not in parameters:
            raise ValueError(f"plan key 'attacks[{index}].{key}': {name} takes no parameter {key!r}; it takes "
                             f"{sorted(parameters)}")
        _check_like_default(f"attacks[{index}].{key}", value, parameters[key].default)


def _check_like_default(key: str, value: object, default: object) -> None:
    """The value must have the type of the parameter's default (a float parameter also takes a whole number)."""
    if default is None or default is inspect.Parameter.empty:
        if value is not None and not isinstance(value, _NUMBER):
            raise ValueError(f"plan key {key!r} must be a number, got {value!r}")
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, _NUMBER) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"plan key {key!r} must be a {type(default).__name__} like its default {default!r}, "
                         f"got {value!r}")
