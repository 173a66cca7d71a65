"""The audit plan: which stages run on how many images with which explainers and attacks, validated field by field
when it is read, so a wrong type in a TOML or YAML file is an error naming the key before any stage runs."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields

from kdscope.attacks import ATTACKS
from kdscope.core.registry import Entry
from kdscope.explainers import METHODS
from kdscope.results.schema import StageRecord


@dataclass(frozen=True)
class Stage:
    """One audit stage: its name in plans, results and the report, and what it measures, in two steps so that
    images can stream in batches and across processes. `measure(context, batch)` returns the batch's outcomes
    (per-image arrays, or accumulators with `merge`); `finish(context, outcomes)` makes the stage's record
    (`results.STAGE_RECORDS[name]`, or why it could not run) from every batch's outcomes joined in image order.
    A stage without `measure` works on a fixed few images in `finish`. Stages of one `group` share a pass over the
    images, and with it each batch's forward passes and maps."""

    name: str
    description: str
    measure: Callable[..., dict] | None
    finish: Callable[..., StageRecord]
    group: str


STAGES: dict[str, Stage] = {}
"""The one registry of stages, in the order they run: `kdscope.audit.stages` fills it, and importing anything from
`kdscope.audit` imports that module first (the package's `__init__`), so a Plan never sees it empty."""


@dataclass(frozen=True)
class Plan:
    """What runs: how many images, which explainers (localisation when the data has masks; the gallery shows the
    first `gallery_images`), which attacks (each a dict of `run` arguments; the first with an eps also draws robust
    accuracy curves at `robust_eps` on `robust_images`), CKA layers per model name ('auto': up to four spatial
    layers), the sanity checks, and how many images flow through the models at once (`batch_size`; None chooses
    from the image size and the largest model, see `resolved_batch_size`). Results depend on the batch size (each
    batch's attack has its own seed), so it is recorded with them."""

    images: int = 256
    stages: tuple[str, ...] = field(default_factory=lambda: tuple(STAGES))
    explainers: tuple[str, ...] = ("gradcam", "gradient")
    attacks: tuple[dict, ...] = ({"attack": "pgd", "eps": 4 / 255, "steps": 10},)
    robust_eps: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
    robust_images: int = 128
    gallery_images: int = 6
    cka_layers: dict = field(default_factory=dict)
    sanity_methods: tuple[str, ...] = ("gradient", "gradcam")
    seed: int = 0
    batch_size: int | None = None

    def validate(self) -> None:
        """Every field's type and range, each error naming its key: checked before any stage runs."""
        check_int("images", self.images, 4)
        check_int("robust_images", self.robust_images, 1)
        check_int("gallery_images", self.gallery_images, 0)
        check_int("seed", self.seed, 0)
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, 1)
        check_names("stages", self.stages, list(STAGES))
        check_names("explainers", self.explainers, list(METHODS))
        check_names("sanity_methods", self.sanity_methods, list(METHODS))
        check_positive_numbers("robust_eps", self.robust_eps)
        check_layers(self.cka_layers)
        if not isinstance(self.attacks, (list, tuple)):
            raise ValueError(f"plan key 'attacks' must be a list of attack tables, got {self.attacks!r}")
        for index, config in enumerate(self.attacks):
            check_attack(index, config, ATTACKS)

    @classmethod
    def from_mapping(cls, values: dict) -> Plan:
        """A Plan from a parsed TOML/YAML table; unknown keys are an error that lists the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown plan keys {unknown}; a plan has {sorted(known)}")
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        plan = cls(**converted)
        plan.validate()
        return plan


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


def check_attack(index: int, config: object, attacks: Mapping[str, Entry]) -> None:
    """An attack table: a known 'attack' name and only parameters that attack takes, of the right type."""
    if not isinstance(config, dict) or config.get("attack") not in attacks:
        raise ValueError(f"plan key 'attacks[{index}]' must be a table with an 'attack' name from {sorted(attacks)} "
                         f"and its parameters, got {config!r}")
    entry = attacks[config["attack"]]
    parameters = entry.parameters(exclude=("target",))
    for key, value in config.items():
        if key == "attack":
            continue
        if key not in parameters:
            raise ValueError(f"plan key 'attacks[{index}].{key}': {entry.name} takes no parameter {key!r}; it takes "
                             f"{sorted(parameters)}")
        if key in entry.choices and value not in entry.choices[key]:
            raise ValueError(f"plan key 'attacks[{index}].{key}' must be one of {entry.choices[key]}, got {value!r}")
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


def resolved_batch_size(batch_size: int | None, image_shape: tuple[int, ...], parameters: int) -> int:
    """The batch size given, or one that keeps a batch's activations (and the backward pass of explainers and
    attacks) modest: about 2^19 pixels per batch (128 images at 64x64, 8 at 224x224), halved for models over 50M
    parameters, as a power of two in [4, 256]. It depends on nothing but the plan, the images and the models, so
    the same audit gets the same batches on any machine."""
    if batch_size is not None:
        return batch_size
    pixels = max(1, image_shape[-1] * image_shape[-2])
    size = (1 << 19) // pixels // (2 if parameters > 50_000_000 else 1)
    return min(256, max(4, 1 << max(0, size.bit_length() - 1)))
