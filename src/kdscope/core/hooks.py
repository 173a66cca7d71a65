"""Owned module changes: hooks and temporary attributes that kdscope puts on a user's modules, undone exactly.

Zennit's `Composite.context()` is the model: whoever adds a hook or flips a module attribute does it through one
`ModuleChanges`, which keeps the handles, and leaving its block (also by an exception) removes exactly those hooks
and puts back every attribute it or torch changed (torch marks a module `_is_full_backward_hook` when a full
backward hook is registered), deleting the ones that did not exist before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

_MISSING = object()
"""The previous value of an attribute the module did not have."""


class ModuleChanges:
    """Hooks and attribute changes on modules, undone together when the block ends:

        with ModuleChanges() as changes:
            changes.set(relu, "inplace", False)
            changes.hook(relu.register_full_backward_hook, rule)
    """

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []
        self._saved: dict[tuple[int, str], tuple[nn.Module, object]] = {}

    def __enter__(self) -> ModuleChanges:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()

    def set(self, module: nn.Module, name: str, value: object) -> None:
        """Give a plain attribute (a flag such as ReLU's `inplace`) a value until the block ends."""
        if isinstance(value, (torch.Tensor, nn.Module)):
            raise TypeError(f"ModuleChanges.set is for plain attributes, not a {type(value).__name__}")
        self._remember(module, name, module.__dict__.get(name, _MISSING))
        setattr(module, name, value)

    def no_inplace(self, *models: nn.Module | None) -> None:
        """Switch off every in-place flag (ReLU, LeakyReLU, Hardtanh, ...) until the block ends: an in-place
        activation after a hooked layer overwrites the output the hook kept (a ResNet's `bn1` then reads as its
        ReLU), and its backward rewrites the tensors Grad-CAM differentiates."""
        for model in models:
            for module in () if model is None else model.modules():
                if module.__dict__.get("inplace") is True:
                    self.set(module, "inplace", False)

    def hook(self, register: Callable[..., RemovableHandle], hook: Callable, **kwargs: object) -> RemovableHandle:
        """Call a module's bound `register_*_hook` method and own the hook, and whatever attribute torch set on the
        module while registering it."""
        module = register.__self__
        before = dict(module.__dict__)
        handle = register(hook, **kwargs)
        self._handles.append(handle)
        for name, value in module.__dict__.items():
            if name not in before or value is not before[name]:
                self._remember(module, name, before.get(name, _MISSING))
        return handle

    def undo(self) -> None:
        """Remove the hooks, newest first, then restore the attributes; a second call does nothing."""
        while self._handles:
            self._handles.pop().remove()
        for (_, name), (module, previous) in reversed(self._saved.items()):
            if previous is _MISSING:
                module.__dict__.pop(name, None)
            else:
                setattr(module, name, previous)
        self._saved.clear()

    def _remember(self, module: nn.Module, name: str, previous: object) -> None:
        """Keep the first value seen: that is the one from before the block."""
        self._saved.setdefault((id(module), name), (module, previous))


def first_tensor(output: object) -> torch.Tensor | None:
    """A module's output tensor: the output itself, else the first tensor in a tuple, list or dict (a ModelOutput)."""
    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, Mapping) else output if isinstance(output, (tuple, list)) else ()
    return next((tensor for tensor in map(first_tensor, values) if tensor is not None), None)
