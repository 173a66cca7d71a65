"""Turn a model reference into a Subject: a kdscope checkpoint, a TorchScript file, a torch.export archive, or a
`module:function` factory plus a state_dict. Nothing is loaded in a way that runs code from a file unless the user
says they trust it, and the JSON beside a file never makes kdscope load another file than the one named.
"""

from __future__ import annotations

import importlib
import pickle
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from kdscope import zoo
from kdscope.core.checkpoint import (
    FACTORY_ATTRIBUTE,
    FORMAT,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    checkpoint_paths,
    load_state_dict,
    read_metadata,
)
from kdscope.core.export_archive import load_exported_module
from kdscope.core.subject import Subject

SUBJECT_METADATA = ("arch", "data", "metrics", "seed", "train_config", "lineage", "compression", "input_shape")


class RandomWeightsError(ValueError):
    """A `module:function` model was given no weights: auditing its random initialisation is rarely what is meant."""


class UntrustedFactoryError(UnsafeCheckpointError):
    """A checkpoint names the factory that builds its network; rebuilding it would run code the file chose."""

    def __init__(self, path: Path, factory: str) -> None:
        RuntimeError.__init__(
            self,
            f"{path} records that its network is built by {factory!r}: rebuilding it imports that module and calls "
            f"that function, code named by the file. If you trust the checkpoint, pass trust=True (CLI: "
            f"--trust-checkpoint); or name the factory yourself: load_subject({factory!r}, weights={str(path)!r}) "
            f"(CLI: {factory} as the model, with --weights {path})."
        )


def load_subject(
    reference: str | Path,
    *,
    weights: str | Path | None = None,
    name: str | None = None,
    role: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    default_mean: Sequence[float] | None = None,
    default_std: Sequence[float] | None = None,
    trust: bool = False,
    random_weights: bool = False,
    output: str | Callable[[object], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> Subject:
    """Load a model as a Subject on `device` (the CPU by default; an int8 model stays on the CPU, where its kernels
    run).

    `reference` is a kdscope checkpoint (NAME.pt, or NAME.pt2 for int8, with NAME.json), a TorchScript file, a
    torch.export `.pt2` archive, a `package.module:function` that builds the network (then `weights` is its
    state_dict, and `random_weights=True` is needed to go without), or, with `trust=True` only, a pickled nn.Module.
    `mean`/`std` override the recorded normalisation; `default_mean`/`default_std` apply only where none is
    recorded. A kdscope JSON beside the weights (`vit.pt` + `vit.json`) supplies normalisation and class names.
    `output` names the logits in what the model returns (see `Subject.select_logits`); a key recorded in the
    checkpoint applies when none is given.

    A checkpoint of a model that is not from the zoo records the factory that built it (`package.module:function`);
    rebuilding it runs that code, so it needs `trust=True`, or the factory as `reference` with the checkpoint as
    `weights` (which the user names, so nothing runs that the file chose).
    """
    text = str(reference)
    path = Path(text)
    twin = None
    if not path.exists() and _looks_like_factory(text):
        model, meta = _from_factory(text, weights, trust, random_weights)
    elif not path.exists():
        raise FileNotFoundError(f"model {text!r} not found: give a file path or a 'package.module:function' factory")
    elif _is_kdscope_checkpoint(path):
        model, meta, twin = _from_checkpoint(path, weights, trust)
    else:
        if weights is not None:
            raise ValueError(f"weights={str(weights)!r} is only for a 'module:function' model or a kdscope checkpoint; "
                             f"{path} holds its own weights")
        model, meta = _from_file(path, trust), {}
    normalization = meta.get("normalization") or {}
    recorded_mean, recorded_std = normalization.get("mean"), normalization.get("std")
    chosen_mean = _first(mean, recorded_mean, default_mean)
    chosen_std = _first(std, recorded_std, default_std)
    label = name or meta.get("name") or (text.partition(":")[2] if not path.exists() else path.stem)
    if chosen_mean is None and chosen_std is None and not isinstance(model, torch.jit.ScriptModule):
        warnings.warn(f"{label} records no normalisation and none was given: it will see raw [0, 1] images. If it "
                      "was trained on normalised inputs, pass mean=/std= (CLI: --mean/--std).", stacklevel=2)
    if twin is None:
        model = model.to(device)
    return Subject(
        model,
        name=label,
        role=role or meta.get("role") or "other",
        mean=chosen_mean,
        std=chosen_std,
        input_range=tuple(meta.get("input_range", (0.0, 1.0))),
        class_names=meta.get("class_names"),
        twin=twin,
        metadata={k: v for k, v in meta.items() if k in SUBJECT_METADATA},
        output=output if output is not None else meta.get("output"),
    )


def _first(*values: Sequence[float] | None) -> Sequence[float] | None:
    return next((value for value in values if value is not None), None)


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


def _from_checkpoint(path: Path, weights: str | Path | None,
                     trust: bool) -> tuple[nn.Module, dict, nn.Module | None]:
    """(model, metadata, fake-quant twin or None) of a kdscope checkpoint: a zoo model's state_dict, or int8.

    The metadata only describes the file the user named: it never redirects loading to another file."""
    meta = read_metadata(path)
    is_int8 = bool((meta.get("compression") or {}).get("int8"))
    expected = checkpoint_paths(path)[0].with_suffix(".pt2" if is_int8 else ".pt")
    if path.suffix == ".json" or path.resolve() != expected.resolve():
        what = "an int8 model" if is_int8 else "a state_dict"
        raise ValueError(f"{checkpoint_paths(path)[1]} describes {what} stored in {expected.name}, but {path.name} "
                         f"was named; load {expected} itself")
    if is_int8:
        if weights is not None:
            raise ValueError(f"{path} is an int8 archive with its own weights; weights= does not apply to it")
        from kdscope.compress.quantize import load_int8

        model, twin = load_int8(path, trust=trust)
        return model, meta, twin
    model = _with_compression(_network(path, meta, trust), meta.get("compression") or {})
    state = load_state_dict(weights or path)
    _load_weights(model, state, path)
    return model.eval(), meta, None


def _network(path: Path, meta: dict, trust: bool) -> nn.Module:
    """A fresh network of the architecture the checkpoint records: a zoo model, or (trusted) its factory's."""
    arch, factory = meta.get("arch"), meta.get("factory")
    if arch and arch.get("name") in zoo.ARCHITECTURES:
        return zoo.build(arch["name"], **arch["kwargs"])
    if isinstance(factory, str) and _looks_like_factory(factory):
        if not trust:
            raise UntrustedFactoryError(path, factory)
        return build_from_factory(factory)
    raise ValueError(f"{path} records neither a zoo architecture nor a 'package.module:function' factory; load it as "
                     f"'module:function' with weights={str(path)!r}")


def _with_compression(model: nn.Module, compression: dict) -> nn.Module:
    """A freshly built network with the pruned shapes, mask slots and bf16 wrapper its saved state_dict expects."""
    from kdscope.compress.bf16 import Bf16Model
    from kdscope.compress.masks import apply_masks, prunable_layers
    from kdscope.compress.reshape import restore_shapes

    restore_shapes(model, compression.get("shapes") or {})
    layers = prunable_layers(model, list(compression.get("masked_layers") or []))
    apply_masks(model, {name: torch.ones_like(layer.weight, dtype=torch.bool) for name, layer in layers.items()})
    return Bf16Model(model) if compression.get("bf16") else model


def build_from_factory(reference: str) -> nn.Module:
    """Call the `package.module:function` factory (no arguments) and return its network, which remembers the
    reference, so the checkpoints written of it (trained, pruned, distilled into it) record how to rebuild it."""
    module_name, _, function_name = reference.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import {reference!r} ({error}); is the module on PYTHONPATH?") from error
    model = factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"{reference} returned {type(model).__name__}, not a torch.nn.Module")
    setattr(model, FACTORY_ATTRIBUTE, reference)
    return model


def _from_factory(reference: str, weights: str | Path | None, trust: bool,
                  random_weights: bool) -> tuple[nn.Module, dict]:
    """(model, metadata): the factory's module with the weights loaded, and the kdscope JSON beside the weights
    (normalisation, class names, the pruned shapes and masks its state_dict has) when there is one."""
    if weights is None and not random_weights:
        raise RandomWeightsError(
            f"{reference} is built with random weights: pass its trained state_dict (weights=..., CLI: --weights "
            "NAME=FILE), or random_weights=True (CLI: --random-weights) to audit the random initialisation on purpose")
    if weights is not None and random_weights:
        raise ValueError(f"{reference}: give weights or random_weights=True, not both")
    model = build_from_factory(reference)
    if weights is None:
        return model.eval(), {}
    meta = _sidecar_metadata(Path(weights))
    model = _with_compression(model, meta.get("compression") or {})
    state = _trusted_load(Path(weights)) if trust else load_state_dict(weights)
    if isinstance(state, nn.Module):
        state = state.state_dict()
    _load_weights(model, state, Path(weights))
    return model.eval(), meta


def _sidecar_metadata(weights: Path) -> dict:
    """The kdscope JSON written beside these weights (by `train` or `save_checkpoint`), or nothing."""
    meta_path = checkpoint_paths(weights)[1]
    if weights.suffix not in (".pt", ".pth") or not meta_path.exists():
        return {}
    try:
        meta = read_metadata(weights)
    except (ValueError, OSError):
        return {}
    return {k: v for k, v in meta.items() if k in ("normalization", "class_names", "input_range", "name", "role",
                                                      "output", *SUBJECT_METADATA) and k != "arch"}


def _from_file(path: Path, trust: bool) -> nn.Module:
    kind = _archive_kind(path)
    if kind == "torchscript":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    if kind == "export":
        return load_exported_module(path, trust=trust)
    state = _trusted_load(path) if trust else load_state_dict(path)
    if isinstance(state, nn.Module):
        return state.eval()
    raise ValueError(
        f"{path} holds a state_dict, not a model: kdscope needs the architecture too. Load it as "
        f"'package.module:function' with weights={str(path)!r} (CLI: --model module:function --weights {path})"
    )


def _trusted_load(path: Path) -> object:
    """Full unpickling, which the user allowed; a file that cannot be read at all is called corrupt, not unsafe."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, pickle.UnpicklingError) as error:
        raise CorruptCheckpointError(path, error) from error


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
    if not isinstance(state, dict):
        raise ValueError(f"{source} holds a {type(state).__name__}, not a state_dict of tensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"weights in {source} do not fit the architecture: {str(error).splitlines()[0]}") from error
