"""A registry entry, the one shape every kind of method takes (explainers, attacks, compression methods, audit
stages): its name, what it can do, and its parameters read from the function's own signature, so the CLI's
choices, plan validation and the report's method lists come from one place."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Entry(Generic[R]):
    """A named method. `capabilities` say what it needs and where it works (`needs_gradients`,
    `needs_spatial_layer`, `needs_relu_modules`, `runs_int8_kernels`, ...); `choices` list the allowed values of a
    parameter whose type alone does not say them (pgd's `norm`)."""

    name: str
    function: Callable[..., R]
    description: str
    capabilities: frozenset[str] = frozenset()
    fixed: Mapping[str, object] = field(default_factory=dict)
    choices: Mapping[str, tuple] = field(default_factory=dict)

    def __call__(self, *args: object, **kwargs: object) -> R:
        return self.function(*args, **self.fixed, **kwargs)

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    def parameters(self, *, exclude: tuple[str, ...] = ()) -> dict[str, inspect.Parameter]:
        """The keyword-only parameters a caller may set (name -> parameter with its default), less the fixed ones."""
        return {p.name: p for p in inspect.signature(self.function).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in self.fixed and p.name not in exclude}


def lookup(registry: Mapping[str, Entry], name: str, kind: str) -> Entry:
    """The entry called `name`, or an error listing the known names of this kind."""
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {sorted(registry)}")
    return registry[name]
