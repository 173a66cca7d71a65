"""Which layer a method looks at, decided one way for every caller: Grad-CAM's default target layer and CKA's taps,
both read from the survey of what each module outputs (`kdscope.core.layers`, which also checks a layer the user
names)."""

from __future__ import annotations

import torch
from torch import fx, nn

from kdscope.core.layers import Survey, hookable_model, is_spatial, survey
from kdscope.core.subject import Subject


def hookable(subject: Subject) -> bool:
    """TorchScript modules refuse forward hooks, so they have no CKA taps."""
    return not isinstance(subject.model, torch.jit.ScriptModule)


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
        spatial = [name for name in _called_children(found, prefix) if is_spatial(found.shapes[name])]
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


def _spatial(node: fx.Node) -> bool:
    value = node.meta.get("val")
    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
    return len(shape) == 4 and isinstance(shape[2], int) and shape[2] * shape[3] > 1
