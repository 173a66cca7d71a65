"""Subject: one model under audit, with its normalisation, device, role and a guard that leaves it unchanged.

Everything downstream (explainers, attacks, metrics) receives a Subject, never a bare module. Images enter as raw
float32 NCHW in [0, 1]; the Subject normalises them, runs the model in eval mode and hands back logits.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from kdscope.core.hooks import ModuleChanges, first_tensor

ROLES = ("teacher", "student", "independent_student", "pseudo_label_student", "random_teacher_student",
         "other_teacher_student", "pruned", "quantized", "other")
"""A distilled student ('student') is judged against its controls (SPEC §12): the 'independent_student' (no teacher),
the 'pseudo_label_student' (the teacher's argmax instead of its distribution), the 'random_teacher_student' (an
untrained teacher) and the 'other_teacher_student' (distilled from another teacher, e.g. one without an invariance)."""
CONTROL_ROLES = ("independent_student", "pseudo_label_student", "random_teacher_student", "other_teacher_student")


class ProbabilityOutputError(ValueError):
    """The model returned probabilities where kdscope needs logits."""


class Subject:
    """A model plus what is needed to run it correctly: normalisation, input range, device, role, gradient twin.

    `mean` and `std` hold one value per image channel, or a single value that serves every channel."""

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str = "model",
        role: str = "other",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_range: tuple[float, float] = (0.0, 1.0),
        device: str | torch.device | None = None,
        twin: nn.Module | None = None,
        class_names: Sequence[str] | None = None,
        metadata: dict | None = None,
        outputs: str = "auto",
        output: str | Callable[[object], torch.Tensor] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"Subject needs a torch.nn.Module, got {type(model).__name__}")
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        low, high = map(float, input_range)
        if not low < high:
            raise ValueError(f"input_range must be (low, high) with low < high, got {input_range}")
        if outputs not in ("auto", "logits"):
            raise ValueError(f"outputs must be 'auto' (refuse outputs that look like probabilities) or 'logits', "
                             f"got {outputs!r}")
        if output is not None and not (isinstance(output, str) or callable(output)):
            raise TypeError(f"output must be a key (str) or a callable that returns the logits, got {output!r}")
        self.outputs, self.output = outputs, output
        self._outputs_decided = outputs == "logits"
        self.model, self.twin, self.name, self.role = model, twin, str(name), role
        self.input_range = (low, high)
        self.device = _model_device(model, device)
        self.class_names = tuple(class_names) if class_names is not None else None
        self.metadata = dict(metadata or {})
        self._classes: int | None = None
        self._guard_depth = 0
        self.mean = _channel_vector(mean, "mean", self.device)
        self.std = _channel_vector(std, "std", self.device)
        if self.std is not None and bool((self.std <= 0).any()):
            raise ValueError(f"std must be positive in every channel, got {std}")

    def __repr__(self) -> str:
        model = type(self.model).__name__
        return f"Subject(name={self.name!r}, role={self.role!r}, model={model}, device={self.device})"

    @property
    def gradient_model(self) -> nn.Module:
        """The module gradients are taken from: the differentiable twin when there is one (int8), else the model."""
        return self.twin if self.twin is not None else self.model

    @property
    def gradient_source(self) -> str:
        """Which model gradients come from: an int8 Subject's fake-quant 'twin', else the 'model'."""
        return "twin" if self.twin is not None else "model"

    @property
    def forward_source(self) -> str:
        """Which model forward-only methods (occlusion, superpixel SHAP, Square) run: the 'int8 model' kernels
        themselves when there is a twin, else the 'model'."""
        return "int8 model" if self.twin is not None else "model"

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw [0, 1] images -> the model's input space (out of place)."""
        if self.mean is not None:
            x = x - self.mean
        if self.std is not None:
            x = x / self.std
        return x

    @contextmanager
    def guard(self) -> Iterator[Subject]:
        """Eval mode inside; on exit (also after an exception) restore every module's mode and parameters'
        requires_grad flags. Hooks are not the guard's business: whoever adds one does it through a `ModuleChanges`,
        which removes exactly its own, so a hook the user adds inside the guard stays.

        Modes are set per module rather than through `train()`, which torch.export programs refuse (their graph
        already fixes the mode). A guard opened inside another guard of the same Subject does nothing: the outer
        one restores everything, and explainers and attacks open one per call, then call `logits` many times."""
        if self._guard_depth:
            self._guard_depth += 1
            try:
                yield self
            finally:
                self._guard_depth -= 1
            return
        modules = _all_modules(self.model, self.twin)
        modes = [m.training for m in modules]
        params = [p for m in modules for p in m.parameters(recurse=False)]
        requires_grad = [p.requires_grad for p in params]
        for m, mode in zip(modules, modes):
            if mode:
                _set_training(m, False)
        self._guard_depth = 1
        try:
            yield self
        finally:
            self._guard_depth = 0
            for m, mode in zip(modules, modes):
                if m.training != mode:
                    _set_training(m, mode)
            for p, flag in zip(params, requires_grad):
                if p.requires_grad != flag:
                    p.requires_grad_(flag)

    def logits(self, x: torch.Tensor, *, use_twin: bool = False) -> torch.Tensor:
        """Validated raw images -> logits, in eval mode. Gradients flow to `x` when it requires them."""
        self.check_images(x)
        module = self.gradient_model if use_twin else self.model
        with self.guard():
            out = self.select_logits(module(self.normalize(x.to(self.device))))
        check_logits(out, self.name, probabilities=not self._outputs_decided)
        self._outputs_decided = True
        return out

    def select_logits(self, raw: object) -> torch.Tensor:
        """The logits in what the model returned: `output` when given (a key or a callable); else a tensor itself,
        the first element of a tuple or list, or the 'logits' entry of a dict or a HuggingFace `ModelOutput`.
        Anything else is refused with the `output=` that resolves it."""
        if callable(self.output):
            return self.output(raw)
        if isinstance(self.output, str):
            return _by_key(raw, self.output, self.name)
        if isinstance(raw, torch.Tensor):
            return raw
        if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], torch.Tensor):
            return raw[0]
        if isinstance(raw, Mapping) and isinstance(raw.get("logits"), torch.Tensor):
            return raw["logits"]
        found = list(raw) if isinstance(raw, Mapping) else type(raw).__name__
        raise ValueError(f"{self.name} returned {found}, which holds no logits kdscope can find (a tensor, the first "
                         "element of a tuple, or a 'logits' entry); name them: Subject(..., output='KEY') or "
                         "output=lambda out: ... (CLI: --output KEY)")

    @torch.no_grad()
    def num_classes(self, x: torch.Tensor) -> int:
        """Number of logits, from one forward pass on the first image of `x` the first time, cached after."""
        if self._classes is None:
            self._classes = int(self.logits(x[:1]).shape[1])
        return self._classes

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Top-1 class per image, batched, without gradients."""
        return torch.cat([self.logits(x[i : i + batch_size]).argmax(1).cpu() for i in range(0, len(x), batch_size)])

    @torch.no_grad()
    def evaluate(self, data: torch.utils.data.Dataset, batch_size: int = 256) -> dict[str, float]:
        """Accuracy and mean cross-entropy on an ImageSet, its labels matched by class name to this model's classes
        (a folder's alphabetical order is never taken for the model's); labels the model has no output for are
        refused."""
        from kdscope.data.classes import align_classes, check_label_range

        data = align_classes(data, self.class_names, model=self.name)
        if len(data):
            check_label_range(data, self.num_classes(data.images(slice(0, 1))), model=self.name)
        correct, loss, n = 0, 0.0, 0
        for x, y in data.batches(batch_size):
            out = self.logits(x)
            y = y.to(out.device)
            correct += int((out.argmax(1) == y).sum())
            loss += float(nn.functional.cross_entropy(out.float(), y, reduction="sum"))
            n += len(y)
        if n == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        return {"accuracy": correct / n, "loss": loss / n, "n": n}

    def layers(self) -> dict[str, nn.Module]:
        """Every named submodule (hookable by name), in definition order; pruning masks' internals left out."""
        return {name: m for name, m in self.model.named_modules() if name and ".parametrizations" not in name}

    def layer(self, name: str) -> nn.Module:
        layers = self.layers()
        if name not in layers:
            close = difflib.get_close_matches(name, list(layers), n=3)
            hint = f" Did you mean {close}?" if close else f" Available: {list(layers)[:20]}"
            raise KeyError(f"{self.name} has no layer {name!r}.{hint}")
        return layers[name]

    @contextmanager
    def capture(self, names: Sequence[str], *, detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
        """Record the outputs of the named layers during forward passes inside the block; hooks always removed.
        A layer that returns a tuple, dict or ModelOutput (an attention module's (output, weights)) is recorded as
        its first tensor. In-place activations are switched off inside, so a following `ReLU(inplace=True)` cannot
        overwrite what was recorded."""
        store: dict[str, torch.Tensor] = {}
        with ModuleChanges() as changes:
            changes.no_inplace(self.model)
            for name in names:
                def hook(_module: nn.Module, _inputs: tuple, output: object, name: str = name) -> None:
                    tensor = first_tensor(output)
                    if tensor is None:
                        raise TypeError(f"layer {name!r} of {self.name} returned {type(output).__name__}, which "
                                        "holds no tensor to record; name a layer that outputs one")
                    store[name] = tensor.detach() if detach else tensor
                changes.hook(self.layer(name).register_forward_hook, hook)
            yield store

    def check_images(self, x: torch.Tensor) -> None:
        """Raise a ValueError/TypeError that names the fix when `x` is not a valid raw image batch."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}; use torch.from_numpy(...)")
        if x.dtype != torch.float32:
            raise TypeError(
                f"images must be float32 in [0, 1], got {x.dtype}; convert with x.float() (and /255 for uint8)"
            )
        if x.ndim != 4:
            raise ValueError(
                f"images must be a 4-D NCHW batch, got shape {tuple(x.shape)}; add a batch axis with x[None]"
            )
        if len(x) == 0:
            raise ValueError("images batch is empty")
        self._check_channels(x)
        if not bool(torch.isfinite(x.detach()).all()):
            raise ValueError("images contain NaN or inf values")
        low, high = self.input_range
        lo, hi = float(x.detach().min()), float(x.detach().max())
        if lo < low - 1e-6 or hi > high + 1e-6:
            raise ValueError(
                f"images must be raw values in [{low}, {high}], got [{lo:.3g}, {hi:.3g}]; pass un-normalised images "
                "(the Subject applies its own mean/std), e.g. uint8 / 255"
            )

    def _check_channels(self, x: torch.Tensor) -> None:
        """A mean/std of one value serves every channel; any other length must match the images' channels."""
        channels = x.shape[1]
        for what, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and values.numel() not in (1, channels):
                raise ValueError(
                    f"{self.name}'s {what} has {values.numel()} values but the images have {channels} channels "
                    f"(NCHW shape {tuple(x.shape)}); give {what} one value per channel, or a single value for all "
                    f"channels, or pass {values.numel()}-channel images"
                )


class RawInputModel(nn.Module):
    """A Subject as a plain module of raw [0, 1] images (its normalisation inside): the form other libraries
    (captum, torchattacks, Foolbox) call. `use_twin` runs the gradient model (an int8 Subject's twin)."""

    def __init__(self, subject: Subject, *, use_twin: bool = False) -> None:
        super().__init__()
        self.subject, self.use_twin = subject, use_twin
        self.model = subject.gradient_model if use_twin else subject.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.subject.select_logits(self.model(self.subject.normalize(x)))


def check_logits(out: torch.Tensor, name: str = "model", *, probabilities: bool = True) -> None:
    """Refuse outputs that are not a (N, classes) logit matrix and, with `probabilities`, outputs that look like
    softmax probabilities. A Subject asks the second question once, on the first (clean) batch it runs: inputs
    crafted in an attack can push real logits into that shape. Exact one-hot rows are taken as logits."""
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{name} must return a (batch, classes) logit tensor, got {shape}")
    if out.shape[1] < 2:
        raise ValueError(f"{name} returns {out.shape[1]} output; kdscope needs one logit per class (>= 2)")
    if not probabilities:
        return
    with torch.no_grad():
        looks_like = bool((out >= 0).all() and (out <= 1).all()) and bool(
            torch.allclose(out.float().sum(1), torch.ones(len(out), device=out.device), atol=1e-3)
        ) and not bool(((out == 0) | (out == 1)).all())
    if looks_like:
        raise ProbabilityOutputError(
            f"{name} appears to output probabilities (non-negative rows that sum to 1). kdscope needs logits: remove "
            "the final softmax layer, or wrap the model so it returns log-probabilities (torch.log of its output). "
            "If these are logits, say so: Subject(..., outputs='logits')."
        )


def _by_key(raw: object, key: str, name: str) -> torch.Tensor:
    """`raw[key]` of a dict-like output, else the attribute `key`; an error listing what there is."""
    if isinstance(raw, Mapping) and key in raw:
        return raw[key]
    if not isinstance(raw, Mapping) and hasattr(raw, key):
        return getattr(raw, key)
    there = list(raw) if isinstance(raw, Mapping) else [a for a in dir(raw) if not a.startswith("_")][:20]
    raise ValueError(f"{name}'s output has no {key!r}; it has {there}")


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    actual = tensor.device if tensor is not None else torch.device("cpu")
    if device is not None and torch.device(device) != actual and not (
        torch.device(device).type == actual.type and torch.device(device).index is None
    ):
        raise ValueError(f"the model's parameters are on {actual}, not {device}; call model.to({str(device)!r}) first")
    return actual


def _channel_vector(values: Sequence[float] | None, what: str, device: torch.device) -> torch.Tensor | None:
    if values is None:
        return None
    tensor = torch.as_tensor(values, dtype=torch.float32, device=device).flatten()
    if tensor.numel() == 0 or not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{what} must be one finite value per channel, or a single value for all, got {values}")
    return tensor.view(1, -1, 1, 1)


def _set_training(module: nn.Module, mode: bool) -> None:
    """One module's own mode, not its children's. Written into `__dict__` because torch.export programs refuse
    `train()`; a TorchScript module keeps the flag in its compiled object, so there it goes through setattr."""
    if isinstance(module, torch.jit.ScriptModule):
        module.training = mode
    else:
        module.__dict__["training"] = mode


def _all_modules(*roots: nn.Module | None) -> list[nn.Module]:
    seen: dict[int, nn.Module] = {}
    for root in roots:
        if root is not None:
            for m in root.modules():
                seen.setdefault(id(m), m)
    return list(seen.values())
