"""Which layer a method looks at, decided one way for every caller (Grad-CAM's target layer, CKA's taps, checks of a
layer the user names), from one survey of what each module outputs on one image.

A model is read as *spatial* when the last module output of rank 3 or more (in the order the forward pass finishes
them) is a (N, C, H, W) feature map, and as *tokens* (a ViT) when it is (N, T, D). For a token model the patch grid
comes from the patch embedding's (N, D, H, W) output and the prefix tokens (class, distillation, registers) are the
T - H * W tokens before the patches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import fx, nn

from kdscope.core.hooks import ModuleChanges
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
        return [name for name, shape in self.shapes.items() if _is_spatial(shape) and not _channel_last(
            self.modules[name])]

    def token_layout(self) -> TokenLayout | None:
        """The patch grid and prefix count of the model's token outputs, or None when it has none."""
        tokens = [shape for shape in self.shapes.values() if len(shape) == 3]
        if not tokens:
            return None
        count = tokens[-1][1]
        for shape in self.shapes.values():
            if _is_spatial(shape) and 0 <= count - shape[2] * shape[3] <= MAX_PREFIX_TOKENS:
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


def hookable(subject: Subject) -> bool:
    """TorchScript modules refuse forward hooks, so they have no CKA taps."""
    return not isinstance(subject.model, torch.jit.ScriptModule)


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


def gradcam_layer(subject: Subject, x: torch.Tensor) -> str:
    """Grad-CAM's default layer: a CNN's last spatial feature map; a ViT's last block's input norm (the layer
    pytorch-grad-cam's users settle on), else that block's output."""
    found = survey(subject, x)
    if found.kind == "tokens":
        last = found.blocks()[-1] if found.blocks() else found.candidates()[-1]
        norms = [f"{last}.{name}" for name, module in found.modules[last].named_children()
                 if isinstance(module, nn.LayerNorm) and f"{last}.{name}" in found.shapes]
        return norms[0] if norms else last
    return last_spatial_layer(subject, x, found)


def last_spatial_layer(subject: Subject, x: torch.Tensor, found: Survey | None = None) -> str:
    """Name of the last module (in completion order) whose output is (N, C, H, W) with H * W > 1, preferring the
    module that returns that map as a plain tensor over a backbone that wraps it in a ModelOutput; for an exported
    graph (an int8 Subject's twin), the last such graph node that is not a quantize/dequantize step."""
    model = hookable_model(subject)
    found = found or survey(subject, x)
    spatial = found.spatial()
    if spatial and spatial[-1] in found.wrapped:
        plain = [name for name in spatial if name not in found.wrapped and
                 found.shapes[name] == found.shapes[spatial[-1]]]
        spatial = plain or spatial
    if not spatial and isinstance(model, fx.GraphModule):
        spatial = [node.name for node in model.graph.nodes if _spatial(node) and "quantize" not in str(node.target)]
    if not spatial:
        raise ValueError(f"{subject.name} has no module with a spatial (N, C, H, W) output for Grad-CAM; name a "
                         "layer with layer=... or choose another method")
    return spatial[-1]


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
    if _is_spatial(shape):
        return None
    layout = found.token_layout()
    if len(shape) == 3 and layout is not None and shape[1] == layout.prefix + layout.grid[0] * layout.grid[1]:
        return layout
    raise ValueError(f"layer {layer!r} of {subject.name} outputs shape {shape}, neither a spatial (N, C, H, W) map "
                     f"nor (N, T, D) patch tokens; {hint}")


def representation_layers(subject: Subject, x: torch.Tensor, count: int = 4) -> list[str]:
    """Up to `count` evenly spaced layers for CKA: a ViT's blocks; a CNN's modules with spatial outputs at the
    outermost level that has more than two (a ResNet's stages; a plain CNN's layers inside its `features` block),
    looking through containers that are not called themselves (a ModuleList of stages)."""
    found = survey(subject, x, use_twin=False)
    if found.kind == "tokens":
        return _evenly(found.blocks(), count)
    if found.kind == "none":
        return []
    prefix = ""
    while True:
        spatial = [name for name in _called_children(found, prefix) if _is_spatial(found.shapes[name])]
        inner = [name for name in spatial if list(found.modules[name].children())]
        if len(spatial) > 2 or not inner:
            return _evenly(spatial, count)
        prefix = max(inner, key=lambda name: sum(p.numel() for p in found.modules[name].parameters()))


def _called_children(found: Survey, parent: str) -> list[str]:
    """The children of `parent` that ran, with the children of containers that did not run in their place."""
    names = []
    for name, _ in found.modules[parent].named_children():
        full = f"{parent}.{name}" if parent else name
        names += [full] if full in found.shapes else _called_children(found, full)
    return names


def _evenly(names: list[str], count: int) -> list[str]:
    if len(names) <= count:
        return names
    return [names[round(i * (len(names) - 1) / (count - 1))] for i in range(count)]


def first_tensor(output: object) -> torch.Tensor | None:
    """A module's output tensor: the output itself, else the first tensor in a tuple, list or dict (a ModelOutput)."""
    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, Mapping) else output if isinstance(output, (tuple, list)) else ()
    return next((tensor for tensor in map(first_tensor, values) if tensor is not None), None)


def _shape_of(output: object) -> tuple[int, ...]:
    tensor = first_tensor(output)
    return () if tensor is None else tuple(tensor.shape)


def _channel_last(module: nn.Module) -> bool:
    """Modules that act on the last axis, so a 4-D output of theirs is (N, H, W, C)."""
    return isinstance(module, (nn.Linear, nn.LayerNorm)) or (
        type(module).__name__.endswith("LayerNorm") and getattr(module, "data_format", "") == "channels_last")


def _is_spatial(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[2] * shape[3] > 1


def _spatial(node: fx.Node) -> bool:
    value = node.meta.get("val")
    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
    return len(shape) == 4 and isinstance(shape[2], int) and shape[2] * shape[3] > 1
