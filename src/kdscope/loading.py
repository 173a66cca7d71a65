"""Turn a model reference into a Subject: a kdscope checkpoint, a TorchScript file, a torch.export archive, or a
`module:function` factory plus a state_dict. Pickled whole models load only with `trust=True`.
"""

from __future__ import annotations

import importlib
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from kdscope import zoo
from kdscope.checkpoint import FORMAT, checkpoint_paths, load_state_dict, read_metadata
from kdscope.subject import Subject


def load_subject(
    reference: str | Path,
    *,
    weights: str | Path | None = None,
    name: str | None = None,
    role: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    trust: bool = False,
) -> Subject:
    """Load a model as a Subject on the CPU.

    `reference` is a kdscope checkpoint (NAME.pt with NAME.json), a TorchScript file, a torch.export `.pt2`
    archive, a `package.module:function` that builds the network (then `weights` is its state_dict), or, with
    `trust=True` only, a pickled nn.Module. `mean`/`std` override the normalisation recorded in a checkpoint.
    """
    text = str(reference)
    path = Path(text)
    twin = None
    if not path.exists() and _looks_like_factory(text):
        model, meta = _from_factory(text, weights, trust), {}
    elif not path.exists():
        raise FileNotFoundError(f"model {text!r} not found: give a file path or a 'package.module:function' factory")
    elif _is_kdscope_checkpoint(path):
        model, meta, twin = _from_checkpoint(path, weights)
    else:
        model, meta = _from_file(path, trust), {}
    normalization = meta.get("normalization") or {}
    return Subject(
        model,
        name=name or meta.get("name") or (text.partition(":")[2] if not path.exists() else path.stem),
        role=role or meta.get("role") or "other",
        mean=mean if mean is not None else normalization.get("mean"),
        std=std if std is not None else normalization.get("std"),
        input_range=tuple(meta.get("input_range", (0.0, 1.0))),
        class_names=meta.get("class_names"),
        twin=twin,
        metadata={k: v for k, v in meta.items() if k in ("arch", "data", "metrics", "seed", "train_config", "lineage",
                                                              "compression")},
    )


def _looks_like_factory(text: str) -> bool:
    module, _, function = text.partition(":")
    return bool(module and function and all(part.isidentifier() for part in module.split(".")) and
                function.isidentifier())


def _is_kdscope_checkpoint(path: Path) -> bool:
    _, meta_path, _ = checkpoint_paths(path)
    if path.suffix not in (".pt", ".pt2", ".json") or not meta_path.exists():
        return False
    try:
        return read_metadata(path).get("format") == FORMAT
    except ValueError:
        return False


def _from_checkpoint(path: Path, weights: str | Path | None) -> tuple[nn.Module, dict, nn.Module | None]:
    """(model, metadata, fake-quant twin or None) of a kdscope checkpoint: a zoo model's state_dict, or int8."""
    meta = read_metadata(path)
    if (meta.get("compression") or {}).get("int8"):
        from kdscope.compress.quantize import load_int8

        model, twin = load_int8(path, meta)
        return model, meta, twin
    arch = meta.get("arch")
    if not arch or arch.get("name") not in zoo.ARCHITECTURES:
        raise ValueError(f"{path} does not record a zoo architecture; load it as 'module:function' with weights=")
    model = zoo.build(arch["name"], **arch["kwargs"])
    _restore_compression(model, meta.get("compression") or {})
    if (meta.get("compression") or {}).get("bf16"):
        from kdscope.compress.bf16 import Bf16Model

        model = Bf16Model(model)
    state = load_state_dict(weights or checkpoint_paths(path)[0])
    _load_weights(model, state, path)
    return model.eval(), meta, None


def _restore_compression(model: nn.Module, compression: dict) -> None:
    """Give a freshly built architecture the pruned shapes and mask slots its saved state_dict expects."""
    from kdscope.compress.masks import apply_masks, prunable_layers
    from kdscope.compress.reshape import restore_shapes

    restore_shapes(model, compression.get("shapes") or {})
    layers = prunable_layers(model, list(compression.get("masked_layers") or []))
    apply_masks(model, {name: torch.ones_like(layer.weight, dtype=torch.bool) for name, layer in layers.items()})


def _from_factory(reference: str, weights: str | Path | None, trust: bool) -> nn.Module:
    module_name, _, function_name = reference.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import {reference!r} ({error}); is the module on PYTHONPATH?") from error
    model = factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"{reference} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=False) if trust else load_state_dict(weights)
        if isinstance(state, nn.Module):
            state = state.state_dict()
        _load_weights(model, state, Path(weights))
    return model.eval()


def _from_file(path: Path, trust: bool) -> nn.Module:
    kind = _archive_kind(path)
    if kind == "torchscript":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    if kind == "export":
        return torch.export.load(str(path)).module()
    state = torch.load(path, map_location="cpu", weights_only=False) if trust else load_state_dict(path)
    if isinstance(state, nn.Module):
        return state.eval()
    raise ValueError(
        f"{path} holds a state_dict, not a model: kdscope needs the architecture too. Load it as "
        f"'package.module:function' with weights={str(path)!r} (CLI: --model module:function --weights {path})"
    )


def _archive_kind(path: Path) -> str:
    """Tell TorchScript and torch.export archives apart by their zip layout (both are zip files)."""
    if not zipfile.is_zipfile(path):
        return "pickle"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any("/code/" in name for name in names) and any(name.endswith("constants.pkl") for name in names):
        return "torchscript"
    if any(name.endswith("archive_format") or "/models/" in name for name in names):
        return "export"
    return "pickle"


def _load_weights(model: nn.Module, state: dict, source: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"weights in {source} do not fit the architecture: {str(error).splitlines()[0]}") from error
