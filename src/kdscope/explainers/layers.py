"""Which layer a method looks at, decided one way for every caller: Grad-CAM's target layer and CKA's taps."""

from __future__ import annotations

import torch
from torch import fx, nn

from kdscope.core.hooks import ModuleChanges
from kdscope.core.subject import Subject


def hookable_model(subject: Subject) -> nn.Module:
    """The gradient model, which Grad-CAM must hook; a TorchScript module refuses hooks, so say so and what to do."""
    model = subject.gradient_model
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError(f"Grad-CAM needs layer hooks, which TorchScript modules such as {subject.name} do not "
                         "support; load the model as a kdscope checkpoint, an export archive or module:function + "
                         "weights")
    return model


def last_spatial_layer(subject: Subject, x: torch.Tensor) -> str:
    """Name of the last module (in completion order) whose output is (N, C, H, W) with H * W > 1; for an exported
    graph (an int8 Subject's twin), the last such graph node that is not a quantize/dequantize step."""
    model = hookable_model(subject)
    finished: list[tuple[str, tuple]] = []
    with ModuleChanges() as changes, torch.no_grad():
        for name, module in model.named_modules():
            if name:
                changes.hook(module.register_forward_hook, lambda _m, _i, output, name=name: finished.append(
                    (name, tuple(getattr(output, "shape", ())))))
        subject.logits(x[:1], use_twin=True)
    spatial = [name for name, shape in finished if len(shape) == 4 and shape[2] * shape[3] > 1]
    if not spatial and isinstance(model, fx.GraphModule):
        spatial = [node.name for node in model.graph.nodes if _spatial(node) and "quantize" not in str(node.target)]
    if not spatial:
        raise ValueError(f"{subject.name} has no module with a spatial (N, C, H, W) output for Grad-CAM; name a "
                         "layer with layer=... or choose another method")
    return spatial[-1]


def hookable(subject: Subject) -> bool:
    """TorchScript modules refuse forward hooks, so they have no CKA taps."""
    return not isinstance(subject.model, torch.jit.ScriptModule)


def representation_layers(subject: Subject, x: torch.Tensor, count: int = 4) -> list[str]:
    """Up to `count` evenly spaced modules with spatial outputs, at the outermost level that has more than one
    (a ResNet's stages; a plain CNN's layers inside its single `features` block)."""
    shapes: dict[str, tuple] = {}
    with ModuleChanges() as changes, torch.no_grad():
        for name, module in subject.model.named_modules():
            if name:
                changes.hook(module.register_forward_hook, lambda _m, _i, out, name=name: shapes.__setitem__(
                    name, tuple(getattr(out, "shape", ()))))
        subject.logits(x)
    modules = dict(subject.model.named_modules())
    prefix, spatial = "", []
    while True:
        children = [f"{prefix}{name}" for name, _ in modules[prefix.rstrip(".")].named_children()] if prefix \
            else [name for name, _ in subject.model.named_children()]
        spatial = [name for name in children if len(shapes.get(name, ())) == 4 and
                   shapes[name][2] * shapes[name][3] > 1]
        if len(spatial) != 1 or not list(modules[spatial[0]].children()):
            break
        prefix = f"{spatial[0]}."
    if len(spatial) <= count:
        return spatial
    return [spatial[round(i * (len(spatial) - 1) / (count - 1))] for i in range(count)]


def _spatial(node: fx.Node) -> bool:
    value = node.meta.get("val")
    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
    return len(shape) == 4 and isinstance(shape[2], int) and shape[2] * shape[3] > 1
