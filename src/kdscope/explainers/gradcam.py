"""Grad-CAM (Selvaraju et al. 2017) and guided Grad-CAM.

alpha_k = mean_ij d y_c / d A^k_ij;  L = ReLU(sum_k alpha_k A^k), bilinearly upsampled to the input size. The
target layer is named, or found automatically: the last module whose output is a spatial feature map (4-D, more
than one position), in the order the forward pass finishes them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from kdscope.explainers.base import Explanation, check_explain_inputs, frozen, target_logits
from kdscope.explainers.gradients import modified_relu_gradient
from kdscope.hooks import ModuleChanges
from kdscope.subject import Subject


def _hookable(subject: Subject) -> nn.Module:
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
    model = _hookable(subject)
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


def layer_gradcam(subject: Subject, x: torch.Tensor, target: torch.Tensor, layer: str) -> torch.Tensor:
    """The Grad-CAM map at the layer's own resolution (inside an active guard)."""
    model = _hookable(subject)
    x = x.detach().to(subject.device).requires_grad_(True)
    if isinstance(model, fx.GraphModule) and layer in {node.name for node in model.graph.nodes}:
        subject.check_images(x)
        capture = _NodeCapture(model, layer)
        score = target_logits(capture.run(subject.normalize(x)), target).sum()
        activation = capture.activation
    else:
        module = dict(model.named_modules()).get(layer)
        if module is None:
            raise KeyError(f"{subject.name} has no layer {layer!r} for Grad-CAM")
        store: dict[str, torch.Tensor] = {}
        with ModuleChanges() as changes:
            changes.no_inplace(model)
            changes.hook(module.register_forward_hook, lambda _m, _i, output: store.update(activation=output))
            score = target_logits(subject.logits(x, use_twin=True), target).sum()
        activation = store["activation"]
    if activation.ndim != 4:
        raise ValueError(f"layer {layer!r} outputs shape {tuple(activation.shape)}, not a (N, C, H, W) feature map")
    (grad,) = torch.autograd.grad(score, activation)
    weights = grad.mean((2, 3), keepdim=True)
    return F.relu((weights * activation).sum(1, keepdim=True)).detach()


class _NodeCapture(fx.Interpreter):
    """Runs a graph node by node and keeps one node's output: Grad-CAM on an exported graph, which has no modules
    to hook."""

    def __init__(self, graph_module: fx.GraphModule, node: str) -> None:
        super().__init__(graph_module)
        self.node, self.activation = node, None

    def run_node(self, node: fx.Node) -> object:
        output = super().run_node(node)
        if node.name == self.node:
            self.activation = output
        return output


def _spatial(node: fx.Node) -> bool:
    value = node.meta.get("val")
    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
    return len(shape) == 4 and isinstance(shape[2], int) and shape[2] * shape[3] > 1


def gradcam(subject: Subject, x: torch.Tensor, target: torch.Tensor, *, layer: str | None = None) -> Explanation:
    target = check_explain_inputs(subject, x, target)
    with subject.guard():
        frozen(subject)
        layer = layer or last_spatial_layer(subject, x)
        cam = layer_gradcam(subject, x, target, layer)
    maps = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
    return Explanation(maps, "gradcam", subject.gradient_source, {"layer": layer})


def guided_gradcam(subject: Subject, x: torch.Tensor, target: torch.Tensor, *,
                   layer: str | None = None) -> Explanation:
    """Guided backprop times the upsampled Grad-CAM map, per channel."""
    target = check_explain_inputs(subject, x, target)
    with subject.guard():
        frozen(subject)
        layer = layer or last_spatial_layer(subject, x)
        cam = layer_gradcam(subject, x, target, layer)
        guided = modified_relu_gradient(subject, x, target, "guided_backprop")
    maps = guided * F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
    return Explanation(maps, "guided_gradcam", subject.gradient_source, {"layer": layer})



