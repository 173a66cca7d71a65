"""Explainers: one call, `explain(subject, x, target, method=...)`, for every attribution method."""

from kdscope.explainers.base import Explanation
from kdscope.explainers.gradcam import gradcam, guided_gradcam, last_spatial_layer
from kdscope.explainers.gradients import ActivationRuleError, deconvnet, guided_backprop, saliency
from kdscope.explainers.occlusion import occlusion
from kdscope.explainers.registry import METHODS, explain

__all__ = ["METHODS", "Explanation", "ActivationRuleError", "deconvnet", "explain", "gradcam", "guided_backprop",
           "guided_gradcam", "last_spatial_layer", "occlusion", "saliency"]
