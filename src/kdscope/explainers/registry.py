"""The explainer registry: `explain(subject, x, target, method="gradcam", **params) -> Explanation`, and what each
method needs (gradients, a spatial layer, ReLU modules) and where it runs (the int8 kernels or the float twin)."""

from __future__ import annotations

import torch

from kdscope.core.registry import Entry, lookup
from kdscope.core.subject import Subject
from kdscope.explainers.base import Explanation
from kdscope.explainers.gradcam import gradcam, guided_gradcam
from kdscope.explainers.gradients import deconvnet, guided_backprop, saliency
from kdscope.explainers.occlusion import occlusion
from kdscope.explainers.rollout import attention_rollout
from kdscope.explainers.shap import gradient_shap, superpixel_shap

_GRADIENTS = frozenset({"needs_gradients"})
_RELUS = frozenset({"needs_gradients", "needs_relu_modules"})
_FORWARD = frozenset({"runs_int8_kernels"})

METHODS: dict[str, Entry[Explanation]] = {entry.name: entry for entry in (
    Entry("saliency", saliency, "|d logit / d x| (Simonyan et al. 2014)", _GRADIENTS, {"variant": "absolute"}),
    Entry("gradient", saliency, "signed d logit / d x", _GRADIENTS, {"variant": "gradient"}),
    Entry("grad_x_input", saliency, "gradient times input", _GRADIENTS, {"variant": "grad_x_input"}),
    Entry("deconvnet", deconvnet, "ReLU backward passes positive relevance only (Zeiler & Fergus 2014)", _RELUS),
    Entry("guided_backprop", guided_backprop, "deconvnet rule and forward ReLU mask (Springenberg et al. 2015)",
          _RELUS),
    Entry("gradcam", gradcam, "class-weighted feature map of a spatial layer (Selvaraju et al. 2017)",
          _GRADIENTS | {"needs_spatial_layer"}),
    Entry("guided_gradcam", guided_gradcam, "guided backprop times Grad-CAM", _RELUS | {"needs_spatial_layer"}),
    Entry("occlusion", occlusion, "score drop when a patch is covered (Zeiler & Fergus 2014)", _FORWARD),
    Entry("gradient_shap", gradient_shap, "expected gradients from noisy baselines (Lundberg & Lee 2017)",
          _GRADIENTS),
    Entry("superpixel_shap", superpixel_shap, "Shapley value sampling over superpixels", _FORWARD),
    Entry("attention_rollout", attention_rollout, "attention flow into the class token (Abnar & Zuidema 2020), "
          "class-agnostic", frozenset({"needs_attention"})),
)}


def explain(subject: Subject, x: torch.Tensor, target: torch.Tensor, *, method: str = "gradcam",
            **params: object) -> Explanation:
    """Raw signed maps of `method` for each image and its target class. Gradient methods use the Subject's gradient
    model (an int8 Subject's fake-quant twin); occlusion runs the model itself (the int8 kernels)."""
    return lookup(METHODS, method, "method")(subject, x, target, **params)
