"""Grad-CAM (Selvaraju et al. 2017) and guided Grad-CAM.

alpha_k = mean_ij d y_c / d A^k_ij;  L = ReLU(sum_k alpha_k A^k), bilinearly upsampled to the input size. The
target layer is named, or found automatically: the last module whose output is a spatial feature map (4-D, more
than one position), in the order the forward pass finishes them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdscope.explainers.base import Explanation, check_explain_inputs, frozen, target_logits
from kdscope.explainers.gradients import modified_relu_gradient
from kdscope.subject import Subject


def last_spatial_layer(subject: Subject, x: torch.Tensor) -> str:
    """Name of the last module (in completion order) whose output is (N, C, H, W) with H * W > 1."""
    model = subject.gradient_model
    finished: list[tuple[str, tuple]] = []
    handles = [module.register_forward_hook(
        lambda _m, _i, output, name=name: finished.append((name, tuple(getattr(output, "shape", ())))))
        for name, module in model.named_modules() if name]
    try:
        with torch.no_grad():
            subject.logits(x[:1], use_twin=True)
    finally:
        for handle in handles:
            handle.remove()
    spatial = [name for name, shape in finished if len(shape) == 4 and shape[2] * shape[3] > 1]
    if not spatial:
        raise ValueError(f"{subject.name} has no module with a spatial (N, C, H, W) output for Grad-CAM; name a "
                         "layer with layer=... or choose another method")
    return spatial[-1]


def layer_gradcam(subject: Subject, x: torch.Tensor, target: torch.Tensor, layer: str) -> torch.Tensor:
    """The Grad-CAM map at the layer's own resolution (inside an active guard)."""
    module = dict(subject.gradient_model.named_modules()).get(layer)
    if module is None:
        raise KeyError(f"{subject.name} has no layer {layer!r} for Grad-CAM")
    store: dict[str, torch.Tensor] = {}
    handle = module.register_forward_hook(lambda _m, _i, output: store.update(activation=output))
    try:
        x = x.detach().to(subject.device).requires_grad_(True)
        score = target_logits(subject.logits(x, use_twin=True), target).sum()
    finally:
        handle.remove()
    activation = store["activation"]
    if activation.ndim != 4:
        raise ValueError(f"layer {layer!r} outputs shape {tuple(activation.shape)}, not a (N, C, H, W) feature map")
    (grad,) = torch.autograd.grad(score, activation)
    weights = grad.mean((2, 3), keepdim=True)
    return F.relu((weights * activation).sum(1, keepdim=True)).detach()


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



