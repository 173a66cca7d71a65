"""Explainers: one call, `explain(subject, x, target, method=...)`, for every attribution method."""

from kdscope.explainers.base import Explanation
from kdscope.explainers.gradcam import gradcam, guided_gradcam
from kdscope.explainers.gradients import ActivationRuleError, deconvnet, guided_backprop, saliency
from kdscope.explainers.layers import gradcam_layer, last_spatial_layer, representation_layers
from kdscope.explainers.occlusion import occlusion
from kdscope.explainers.registry import METHODS, explain

__all__ = ["METHODS", "ActivationRuleError", "Explanation", "deconvnet", "explain", "gradcam", "gradcam_layer",
           "guided_backprop", "guided_gradcam", "last_spatial_layer", "occlusion", "representation_layers", "saliency"]
