"""Grad-CAM (Selvaraju et al. 2017) and guided Grad-CAM.

alpha_k = mean_ij d y_c / d A^k_ij;  L = ReLU(sum_k alpha_k A^k), bilinearly upsampled to the input size. The
target layer is named, or found by `explainers.layers.gradcam_layer` (a CNN's last feature map, a ViT's last
block's input norm, whose patch tokens are laid out on their grid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx

from kdscope.core.hooks import ModuleChanges, first_tensor
from kdscope.core.layers import check_layer, hookable_model
from kdscope.core.subject import Subject
from kdscope.explainers.base import Explanation, check_explain_inputs, frozen, target_logits
from kdscope.explainers.gradients import modified_relu_gradient
from kdscope.explainers.layers import gradcam_layer


def layer_gradcam(subject: Subject, x: torch.Tensor, target: torch.Tensor, layer: str) -> torch.Tensor:
    """The Grad-CAM map at the layer's own resolution (inside an active guard). A ViT token layer's patch tokens
    are laid out on their grid first, prefix tokens dropped."""
    model = hookable_model(subject)
    layout = check_layer(subject, x, layer)
    x = x.detach().to(subject.device).requires_grad_(True)
    if isinstance(model, fx.GraphModule) and layer in {node.name for node in model.graph.nodes}:
        subject.check_images(x)
        capture = _NodeCapture(model, layer)
        score = target_logits(subject.select_logits(capture.run(subject.normalize(x))), target).sum()
        activation = capture.activation
    else:
        store: dict[str, torch.Tensor] = {}
        with ModuleChanges() as changes:
            changes.no_inplace(model)
            changes.hook(model.get_submodule(layer).register_forward_hook,
                         lambda _m, _i, output: store.update(activation=first_tensor(output)))
            score = target_logits(subject.logits(x, use_twin=True), target).sum()
        activation = store["activation"]
    (grad,) = torch.autograd.grad(score, activation)
    if layout is not None:
        activation, grad = layout.to_map(activation), layout.to_map(grad)
    if activation.ndim != 4:
        raise ValueError(f"layer {layer!r} outputs shape {tuple(activation.shape)}, not a (N, C, H, W) feature map")
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
        layer = layer or gradcam_layer(subject, x)
        cam = layer_gradcam(subject, x, target, layer)
    maps = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
    return Explanation(maps, "gradcam", subject.gradient_source, {"layer": layer})


def guided_gradcam(subject: Subject, x: torch.Tensor, target: torch.Tensor, *, layer: str | None = None,
                   other_activations: str = "refuse") -> Explanation:
    """Guided backprop times the upsampled Grad-CAM map, per channel; `other_activations` as in guided backprop."""
    target = check_explain_inputs(subject, x, target)
    with subject.guard():
        frozen(subject)
        layer = layer or gradcam_layer(subject, x)
        cam = layer_gradcam(subject, x, target, layer)
        guided = modified_relu_gradient(subject, x, target, "guided_backprop", other_activations)
    maps = guided * F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
    return Explanation(maps, "guided_gradcam", subject.gradient_source,
                       {"layer": layer, "other_activations": other_activations})



