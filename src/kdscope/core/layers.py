"""What each layer of a model outputs, read from one forward pass of one image: the survey that every choice of a
layer starts from (Grad-CAM's target layer and CKA's taps in `kdscope.explainers.layers`, FitNets hint layers in
`kdscope.compress.distill`), and the check of a layer the user names. It sits in core, below compression and the
explainers, because both read it.

A model is read as *spatial* when the last module output of rank 3 or more (in the order the forward pass finishes
them) is a (N, C, H, W) feature map, and as *tokens* (a ViT) when it is (N, T, D). For a token model the patch grid
comes from the patch embedding's (N, D, H, W) output and the prefix tokens (class, distillation, registers) are the
T - H * W tokens before the patches."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn

from kdscope.core.hooks import ModuleChanges, first_tensor
from kdscope.core.subject import Subject

MAX_PREFIX_TOKENS = 16
"""More tokens before the patches than this and a (N, T, D) output is not read as a ViT's tokens."""


@dataclass(frozen=True)
class TokenLayout:
    """Where the patch tokens are in a (N, T, D) output: after `prefix` tokens, `grid` = (rows, columns)."""

    prefix: int
    grid: tuple[int, int]

    def to_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, T, D) tokens -> (N, D, rows, columns) map of the patch tokens, prefix tokens dropped."""
        rows, columns = self.grid
        if tokens.ndim != 3 or tokens.shape[1] != self.prefix + rows * columns:
            raise ValueError(f"expected (N, {self.prefix + rows * columns}, D) tokens, got {tuple(tokens.shape)}")
        return tokens[:, self.prefix:].transpose(1, 2).reshape(len(tokens), -1, rows, columns)


@dataclass(frozen=True)
class Survey:
    """Each module's first output tensor shape, in the order the forward pass finished them, and the module tree."""

    shapes: dict[str, tuple[int, ...]]
    modules: dict[str, nn.Module]
    wrapped: frozenset[str] = frozenset()
    """Modules whose output held its tensor inside a tuple, dict or ModelOutput."""

    @property
    def kind(self) -> str:
        """'spatial' (a CNN), 'tokens' (a ViT) or 'none' (an MLP, a model without feature maps)."""
        ranked = [shape for shape in self.shapes.values() if len(shape) >= 3]
        if ranked and len(ranked[-1]) == 3 and self.token_layout() is not None:
            return "tokens"
        return "spatial" if self.spatial() else "none"

    def spatial(self) -> list[str]:
        """Modules with (N, C, H, W) outputs, H * W > 1; not Linear or LayerNorm outputs, which are channel-last
        (N, H, W, C) inside a ConvNeXt block."""
        return [name for name, shape in self.shapes.items() if is_spatial(shape) and not _channel_last(
            self.modules[name])]

    def token_layout(self) -> TokenLayout | None:
        """The patch grid and prefix count of the model's token outputs, or None when it has none."""
        tokens = [shape for shape in self.shapes.values() if len(shape) == 3]
        if not tokens:
            return None
        count = tokens[-1][1]
        for shape in self.shapes.values():
            if is_spatial(shape) and 0 <= count - shape[2] * shape[3] <= MAX_PREFIX_TOKENS:
                return TokenLayout(count - shape[2] * shape[3], (shape[2], shape[3]))
        return None

    def blocks(self) -> list[str]:
        """A ViT's blocks: the sibling modules of one class that each output the final (N, T, D) token shape, the
        group holding the most parameters (so a block's two LayerNorms never pass for two blocks)."""
        final = next((shape for shape in reversed(self.shapes.values()) if len(shape) == 3), None)
        groups: dict[tuple[str, type], list[str]] = {}
        for parent_name, parent in self.modules.items():
            prefix = f"{parent_name}." if parent_name else ""
            for name, child in parent.named_children():
                if self.shapes.get(f"{prefix}{name}") == final:
                    groups.setdefault((parent_name, type(child)), []).append(f"{prefix}{name}")
        runs = [run for run in groups.values() if len(run) >= 2]
        return max(runs, key=lambda run: sum(p.numel() for n in run for p in self.modules[n].parameters()),
                   default=[])

    def candidates(self) -> list[str]:
        """Layers Grad-CAM can use: spatial maps, or block-level token outputs of a ViT."""
        if self.kind == "tokens":
            final = next(shape for shape in reversed(self.shapes.values()) if len(shape) == 3)
            return [name for name, shape in self.shapes.items() if shape == final]
        return self.spatial()


def hookable_model(subject: Subject) -> nn.Module:
    """The gradient model, which Grad-CAM must hook; a TorchScript module refuses hooks, so say so and what to do."""
    model = subject.gradient_model
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError(f"Grad-CAM needs layer hooks, which TorchScript modules such as {subject.name} do not "
                         "support; load the model as a kdscope checkpoint, an export archive or module:function + "
                         "weights")
    return model


def survey(subject: Subject, x: torch.Tensor, *, use_twin: bool = True) -> Survey:
    """One forward pass of the first image with every module's output shape recorded; no hook stays behind."""
    model = hookable_model(subject) if use_twin else subject.model
    shapes: dict[str, tuple[int, ...]] = {}
    wrapped: set[str] = set()

    def record(name: str, output: object) -> None:
        shapes[name] = _shape_of(output)
        if not isinstance(output, torch.Tensor):
            wrapped.add(name)

    with ModuleChanges() as changes, torch.no_grad():
        for name, module in model.named_modules():
            if name:
                changes.hook(module.register_forward_hook, lambda _m, _i, output, name=name: record(name, output))
        subject.logits(x[:1], use_twin=use_twin)
    return Survey({name: shape for name, shape in shapes.items() if shape}, dict(model.named_modules()),
                  frozenset(wrapped))


def check_layer(subject: Subject, x: torch.Tensor, layer: str) -> TokenLayout | None:
    """A layer the user named must be reached by the forward pass and output a spatial map or ViT tokens; returns
    the token layout for a token layer. Refusals list the candidates."""
    found = survey(subject, x)
    model = hookable_model(subject)
    if isinstance(model, fx.GraphModule) and layer in {node.name for node in model.graph.nodes}:
        return None
    hint = f"candidates: {found.candidates()[-8:]}"
    if layer not in found.modules:
        raise KeyError(f"{subject.name} has no layer {layer!r}; {hint}")
    if layer not in found.shapes:
        raise ValueError(f"layer {layer!r} of {subject.name} is not reached by the forward pass; {hint}")
    shape = found.shapes[layer]
    if is_spatial(shape):
        return None
    layout = found.token_layout()
    if len(shape) == 3 and layout is not None and shape[1] == layout.prefix + layout.grid[0] * layout.grid[1]:
        return layout
    raise ValueError(f"layer {layer!r} of {subject.name} outputs shape {shape}, neither a spatial (N, C, H, W) map "
                     f"nor (N, T, D) patch tokens; {hint}")


def _shape_of(output: object) -> tuple[int, ...]:
    tensor = first_tensor(output)
    return () if tensor is None else tuple(tensor.shape)


def _channel_last(module: nn.Module) -> bool:
    """Modules that act on the last axis, so a 4-D output of theirs is (N, H, W, C)."""
    return isinstance(module, (nn.Linear, nn.LayerNorm)) or (
        type(module).__name__.endswith("LayerNorm") and getattr(module, "data_format", "") == "channels_last")


def is_spatial(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[2] * shape[3] > 1
