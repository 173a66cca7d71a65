"""Every module's `__dict__`, recorded so a test can assert that nothing an explainer did is left on the model:
hooks, hook flags (`_is_full_backward_hook`), in-place flags, modes, parameters and buffers."""

from __future__ import annotations

import torch
from torch import nn


def modules_snapshot(model: nn.Module) -> dict[str, dict[str, object]]:
    """Per module name, a comparable record of each `__dict__` entry."""
    return {name: {key: _record(key, value) for key, value in module.__dict__.items()}
            for name, module in model.named_modules()}


def assert_modules_unchanged(model: nn.Module, snapshot: dict[str, dict[str, object]]) -> None:
    """Same modules, same `__dict__` keys, same records: names the first entry that differs."""
    now = modules_snapshot(model)
    assert now.keys() == snapshot.keys(), "the set of modules changed"
    for name, entries in snapshot.items():
        assert now[name].keys() == entries.keys(), f"module {name!r}: __dict__ keys changed"
        for key, record in entries.items():
            assert now[name][key] == record, f"module {name!r}: {key} changed"


def _record(key: str, value: object) -> object:
    """Tensors by identity and exact bytes, hook dicts by their handle ids, submodules by identity, containers
    entry by entry, anything else by value."""
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value), value.dtype, tuple(value.shape), _bytes(value))
    if isinstance(value, nn.Module):
        return ("module", id(value))
    if isinstance(value, dict) and "_hooks" in key:
        return ("hooks", set(value))
    if isinstance(value, dict):
        return ("dict", {k: _record(k, v) for k, v in value.items()})
    return value


def _bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().cpu().contiguous().flatten()
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
