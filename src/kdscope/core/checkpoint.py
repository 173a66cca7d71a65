"""kdscope checkpoints: `NAME.pt` (a plain state_dict) beside `NAME.json` (architecture, normalisation, data, metrics,
seed, library versions), plus `NAME.resume.pt` (optimiser, schedule, RNG) while training.

Everything is loaded with `weights_only=True`: a checkpoint is data, never code.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdscope.core.io import atomic_write  # lived here; kdscope.core.io has no torch, so reports can use it
from kdscope.core.subject import Subject

FORMAT = "kdscope-checkpoint"
FORMAT_VERSION = 1
# How a checkpoint's network is rebuilt: a zoo model carries `kdscope_arch` (name and arguments), a model built by a
# `package.module:function` factory carries `kdscope_factory` (that reference); the JSON records them as "arch" and
# "factory".
FACTORY_ATTRIBUTE = "kdscope_factory"
REBUILD_ATTRIBUTES = ("kdscope_arch", FACTORY_ATTRIBUTE)


def checkpoint_paths(path: str | Path) -> tuple[Path, Path, Path]:
    """(weights, metadata, resume-state) paths for a checkpoint given as NAME, NAME.pt or NAME.json."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".pt", ".pt2", ".json") else path
    return base.with_suffix(".pt"), base.with_suffix(".json"), base.with_suffix(".resume.pt")


def library_versions() -> dict[str, str]:
    from kdscope.core.version import __version__

    return {"kdscope": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def save_checkpoint(path: str | Path, subject: Subject, extra: dict[str, Any] | None = None) -> Path:
    """Write weights + JSON metadata atomically; returns the weights path."""
    weights, _, _ = checkpoint_paths(path)
    atomic_write(weights, lambda f: torch.save(subject.model.state_dict(), f))
    write_metadata(path, subject, extra)
    return weights


def write_metadata(path: str | Path, subject: Subject, extra: dict[str, Any] | None = None) -> None:
    """Write NAME.json for a Subject (atomic): how to rebuild the network (zoo architecture or factory reference),
    normalisation, classes, where the logits are in its output (a key; a callable cannot be written), versions, and
    its metadata."""
    _, meta_path, _ = checkpoint_paths(path)
    arch = getattr(subject.model, "kdscope_arch", None)
    factory = getattr(subject.model, FACTORY_ATTRIBUTE, None)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": subject.name,
        "role": subject.role,
        "arch": arch,
        **({"factory": factory} if factory else {}),
        **({"output": subject.output} if isinstance(subject.output, str) else {}),
        "normalization": {
            "mean": None if subject.mean is None else subject.mean.flatten().tolist(),
            "std": None if subject.std is None else subject.std.flatten().tolist(),
        },
        "input_range": list(subject.input_range),
        "class_names": list(subject.class_names) if subject.class_names else None,
        "versions": library_versions(),
        **subject.metadata,
        **(extra or {}),
    }
    atomic_write(meta_path, lambda f: f.write(json.dumps(metadata, indent=2, default=_json_default).encode()))


def update_metadata(path: str | Path, **fields: Any) -> None:
    """Add or replace top-level fields of a checkpoint's JSON metadata (atomic rewrite)."""
    _, meta_path, _ = checkpoint_paths(path)
    metadata = read_metadata(path)
    metadata.update(fields)
    atomic_write(meta_path, lambda f: f.write(json.dumps(metadata, indent=2, default=_json_default).encode()))


def read_metadata(path: str | Path) -> dict[str, Any]:
    _, meta_path, _ = checkpoint_paths(path)
    if not meta_path.exists():
        raise FileNotFoundError(f"no kdscope metadata at {meta_path}; a kdscope checkpoint is NAME.pt + NAME.json")
    metadata = json.loads(meta_path.read_text())
    found = metadata.get("format") if isinstance(metadata, dict) else f"a JSON {type(metadata).__name__}"
    if found != FORMAT:
        raise ValueError(f"{meta_path} is not a kdscope checkpoint (format={found!r})")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{meta_path} was written by a newer kdscope (format {metadata['format_version']}); upgrade")
    return metadata


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load tensors only; a file that needs code execution to unpickle is refused with an explanation, and a file
    that cannot be read at all (truncated, not a torch file) is called corrupt rather than unsafe."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        if "Weights only load failed" in str(error):
            raise UnsafeCheckpointError(path, error) from error
        raise CorruptCheckpointError(path, error) from error


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded as plain tensors; loading it would run code from the file."""

    def __init__(self, path: str | Path, cause: Exception) -> None:
        super().__init__(
            f"refusing to unpickle {path}: it is not plain tensors and loading it could run code from the file "
            f"({type(cause).__name__}: {_first_line(cause)}). If you trust its source, pass trust=True "
            "(CLI: --trust-checkpoint); better, save a state_dict instead."
        )


class CorruptCheckpointError(ValueError):
    """A model file that cannot be read at all: truncated, damaged, or not written by torch.save."""

    def __init__(self, path: str | Path, cause: Exception) -> None:
        super().__init__(f"cannot read {path}: the file is truncated or damaged, or was not written by torch.save "
                         f"({type(cause).__name__}: {_first_line(cause)}). Save or copy it again.")


def _first_line(error: Exception) -> str:
    """The line of torch's message that names the cause (for weights-only refusals, the forbidden global)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if "GLOBAL" in line), lines[0] if lines else "")


def save_resume_state(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                      schedule: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
                      loss_hook: object, epoch: int, history: list[dict]) -> None:
    _, _, resume = checkpoint_paths(path)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "generator": generator.get_state(),
        "loss_hook": loss_hook.state_dict() if isinstance(loss_hook, nn.Module) else {},
        "epoch": epoch,
        "history": json.dumps(history),
    }
    atomic_write(resume, lambda f: torch.save(state, f))


def discard_resume_state(path: str | Path) -> None:
    """Training finished: the optimiser state is no longer needed next to the weights."""
    checkpoint_paths(path)[2].unlink(missing_ok=True)


def load_resume_state(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                      schedule: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
                      loss_hook: object) -> dict[str, Any]:
    _, _, resume = checkpoint_paths(path)
    if not resume.exists():
        raise FileNotFoundError(f"nothing to resume: {resume} does not exist (train once with checkpoint=... first)")
    state = load_state_dict(resume)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    generator.set_state(state["generator"])
    if isinstance(loss_hook, nn.Module):
        loss_hook.load_state_dict(state["loss_hook"])
    return {"epoch": int(state["epoch"]), "history": json.loads(state["history"])}


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in checkpoint metadata")
