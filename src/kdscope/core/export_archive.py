"""Load torch.export (`.pt2`) archives without running code from the file.

`torch.export.load` unpickles several archive members with `weights_only=False` (pickled weights and constants, the
example inputs' fallback) and `pickle.loads` (opaque constants): a crafted archive runs arbitrary code that way. Here
every unpickling inside the load is held to torch's weights-only policy (tensors and plain containers only), and a
member that needs more makes the whole load fail with `UnsafeCheckpointError`, unless the user trusts the file.
An archive whose batch axis was exported as a fixed number is refused too: every audit stage batches differently.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import fx

from kdscope.core.checkpoint import UnsafeCheckpointError


def load_exported_program(path: str | Path, *, trust: bool = False) -> torch.export.ExportedProgram:
    """The archive's ExportedProgram; without `trust`, only if loading it runs no code from the file."""
    if trust:
        return torch.export.load(str(path))
    refusals: list[Exception] = []
    try:
        with _weights_only_unpickling(refusals):
            program = torch.export.load(str(path))
    except Exception as error:
        if refusals:
            raise UnsafeCheckpointError(path, refusals[0]) from error
        raise
    if refusals:
        raise UnsafeCheckpointError(path, refusals[0])
    return program


def load_exported_module(path: str | Path, *, trust: bool = False) -> fx.GraphModule:
    """The archive as a callable module, refused when its batch axis is fixed (see `check_dynamic_batch`)."""
    program = load_exported_program(path, trust=trust)
    check_dynamic_batch(program, path)
    return program.module()


def check_dynamic_batch(program: torch.export.ExportedProgram, path: str | Path) -> None:
    """Refuse a program whose first input has a fixed batch size: it fails on any other batch deep inside a run."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        value = node.meta.get("val")
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) > 0 and isinstance(shape[0], int):
            raise ValueError(
                f"{path} was exported with a fixed batch size of {shape[0]} (input {node.name!r}), but kdscope runs "
                "every model on batches of other sizes. Export it with a dynamic batch axis: "
                "torch.export.export(model, (x,), dynamic_shapes={'" + node.name + "': {0: torch.export.Dim.DYNAMIC}})"
            )
        return


@contextlib.contextmanager
def _weights_only_unpickling(refusals: list[Exception]) -> Iterator[None]:
    """Inside: every `torch.load` is weights-only, and raw `pickle.loads` / TorchScript object unpickling refuse.

    Failures are recorded in `refusals`, because torch.export.load catches some errors and falls back."""
    real_torch_load, real_pickle_loads = torch.load, pickle.loads
    real_pickle_load_obj = torch._C._pickle_load_obj

    def weights_only_load(f: object, *args: object, **kwargs: object) -> object:
        kwargs["weights_only"] = True
        try:
            return real_torch_load(f, *args, **kwargs)
        except Exception as error:
            refusals.append(error)
            raise

    def refuse(*_args: object, **_kwargs: object) -> object:
        error = pickle.UnpicklingError("the archive holds a pickled Python object, which would run code on load")
        refusals.append(error)
        raise error

    torch.load, pickle.loads, torch._C._pickle_load_obj = weights_only_load, refuse, refuse
    try:
        yield
    finally:
        torch.load, pickle.loads, torch._C._pickle_load_obj = real_torch_load, real_pickle_loads, real_pickle_load_obj
