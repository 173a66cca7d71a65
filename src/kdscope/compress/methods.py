"""The one registry of compression methods: each one's name, function, method-config class, capabilities and
parameter spec (its config's fields). The `kdscope compress` choices and defaults are generated from it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from kdscope.compress.compressed import Compressed
from kdscope.compress.distill import DistillConfig, distill
from kdscope.compress.prune import LotteryConfig, PruneConfig, lottery_ticket, prune
from kdscope.compress.quantize import QuantizeConfig, quantize
from kdscope.compress.structured import StructuredConfig, structured_prune


@dataclass(frozen=True)
class Parameter:
    """One field of a method's config: its name, annotated type, default and, where they are fixed, its choices."""

    name: str
    type: str
    default: object
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Method:
    """A compression method: `run(parent, data, config, *, train=..., out=..., ...) -> Compressed`.

    `command`: the `kdscope compress` command that offers it. `needs_data`: `data` is required (to train or to
    calibrate). `trains`: 'always', or 'optional' (only given `train=`; for quantize, mode 'qat'). `produces`: the
    kinds of model it makes ('float', 'sparse', 'int8', 'bf16')."""

    name: str
    command: str
    run: Callable[..., Compressed]
    config: type
    needs_data: bool
    trains: str
    produces: tuple[str, ...]

    def parameters(self) -> dict[str, Parameter]:
        """The config's fields by name, read from the dataclass itself so the spec cannot drift from it."""
        return {f.name: Parameter(f.name, str(f.type), _default(f), f.metadata.get("choices"))
                for f in dataclasses.fields(self.config)}


def _default(field: dataclasses.Field) -> object:
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


METHODS: dict[str, Method] = {method.name: method for method in (
    Method("distill", "distill", distill, DistillConfig, needs_data=True, trains="always", produces=("float",)),
    Method("magnitude", "prune", prune, PruneConfig, needs_data=False, trains="optional", produces=("sparse",)),
    Method("structured", "prune", structured_prune, StructuredConfig, needs_data=False, trains="optional",
           produces=("float",)),
    Method("lottery", "prune", lottery_ticket, LotteryConfig, needs_data=True, trains="always",
           produces=("sparse",)),
    Method("quantize", "quantize", quantize, QuantizeConfig, needs_data=True, trains="optional",
           produces=("int8", "bf16")),
)}
