"""The explainer registry: `explain(subject, x, target, method="gradcam", **params) -> Explanation`."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from kdscope.core.subject import Subject
from kdscope.explainers.base import Explanation
from kdscope.explainers.gradcam import gradcam, guided_gradcam
from kdscope.explainers.gradients import deconvnet, guided_backprop, saliency
from kdscope.explainers.occlusion import occlusion
from kdscope.explainers.shap import gradient_shap, superpixel_shap

METHODS: dict[str, Callable[..., Explanation]] = {
    "saliency": functools.partial(saliency, variant="absolute"),
    "gradient": functools.partial(saliency, variant="gradient"),
    "grad_x_input": functools.partial(saliency, variant="grad_x_input"),
    "deconvnet": deconvnet,
    "guided_backprop": guided_backprop,
    "gradcam": gradcam,
    "guided_gradcam": guided_gradcam,
    "occlusion": occlusion,
    "gradient_shap": gradient_shap,
    "superpixel_shap": superpixel_shap,
}


def explain(subject: Subject, x: torch.Tensor, target: torch.Tensor, *, method: str = "gradcam",
            **params: object) -> Explanation:
    """Raw signed maps of `method` for each image and its target class. Gradient methods use the Subject's gradient
    model (an int8 Subject's fake-quant twin); occlusion runs the model itself (the int8 kernels)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    return METHODS[method](subject, x, target, **params)
