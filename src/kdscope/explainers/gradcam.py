"""Grad-CAM (Selvaraju et al. 2017) and guided Grad-CAM.

alpha_k = mean_ij d y_c / d A^k_ij;  L = ReLU(sum_k alpha_k A^k), bilinearly upsampled to the input size. The
target layer is named, or found by `explainers.layers.last_spatial_layer`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx

from kdscope.core.hooks import ModuleChanges
from kdscope.core.subject import Subject
from kdscope.explainers.base import Explanation, check_explain_inputs, frozen, target_logits
from kdscope.explainers.gradients import modified_relu_gradient
from kdscope.explainers.layers import hookable_model, last_spatial_layer


def layer_gradcam(subject: Subject, x: torch.Tensor, target: torch.Tensor, layer: str) -> torch.Tensor:
    """The Grad-CAM map at the layer's own resolution (inside an active guard)."""
    model = hookable_model(subject)
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


def gradcam(subject: Subject, x: torch.Tensor, target: torch.Tensor, *, layer: str | None = None) -> Explanation:
    target = check_explain_inputs(subject, x, target)
    with subject.guard():
        frozen(subject)
        layer = layer or last_spatial_layer(subject, x)
        cam = layer_gradcam(subject, x, target, layer)
    maps = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
    return Explanation(maps, "gradcam", subject.gradient_source, {"layer": layer})


def guided_gradcam(subject: Subject, x: torch.Tensor, target: torch.Tensor, *, layer: str | None = None,
                   other_activations: str = "refuse") -> Explanation:
    """Guided backprop times the upsampled Grad-CAM map, per channel; `other_activations` as in guided backprop."""
    target = check_explain_inputs(subject, x, target)
    with subject.guard():
        frozen(subject)
        layer = layer or last_spatial_layer(subject, x)
        cam = layer_gradcam(subject, x, target, layer)
        guided = modified_relu_gradient(subject, x, target, "guided_backprop", other_activations)
    maps = guided * F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
    return Explanation(maps, "guided_gradcam", subject.gradient_source,
                       {"layer": layer, "other_activations": other_activations})



