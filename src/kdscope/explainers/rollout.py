"""Attention rollout (Abnar & Zuidema 2020): how much each patch token flows into the class token through every
attention layer of a ViT. Per layer, A = 0.5 * mean_heads(attention) + 0.5 * I, rows renormalised; the rollout is
A_L ... A_1, and the map is the class token's row over the patch tokens, on the patch grid, upsampled to the input.

The attention weights are read at the dispatcher, so no model code is changed: an explicit softmax over (T, T)
scores is kept as it is, and a fused scaled-dot-product attention (PyTorch's SDPA, which HuggingFace uses) has its
weights recomputed from the same query, key, scale and mask. Rollout is class-agnostic: the target is ignored,
which the explanation's parameters say."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from kdscope.core.layers import survey
from kdscope.core.subject import Subject
from kdscope.explainers.base import Explanation, check_explain_inputs, frozen

_SOFTMAX = {torch.ops.aten._softmax, torch.ops.aten.softmax}
_FUSED = {getattr(torch.ops.aten, name) for name in (
    "scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_attention_math", "_scaled_dot_product_cudnn_attention") if hasattr(torch.ops.aten, name)}


class NoAttentionError(TypeError):
    """The model has no softmax attention over its tokens, so there is nothing to roll out."""


def attention_rollout(subject: Subject, x: torch.Tensor, target: torch.Tensor, *,
                      residual: float = 0.5) -> Explanation:
    """(N, 1, H, W) rollout maps; `residual` is the identity's weight for the skip connection (0.5 in the paper)."""
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must lie in [0, 1], got {residual}")
    check_explain_inputs(subject, x, target)
    with subject.guard(), torch.no_grad():
        frozen(subject)
        layout = survey(subject, x).token_layout()
        recorder = _AttentionRecorder()
        with recorder:
            subject.logits(x.to(subject.device), use_twin=True)
    tokens = None if layout is None else layout.prefix + layout.grid[0] * layout.grid[1]
    layers = [w for w in recorder.weights if tokens is not None and w.shape[-1] == tokens]
    if not layers:
        raise NoAttentionError(f"{subject.name} shows no softmax attention over patch tokens (a ViT's), so attention "
                               "rollout has nothing to roll out; choose 'gradcam' or 'gradient'")
    rollout = torch.eye(tokens, dtype=torch.float64, device=layers[0].device).expand(len(x), tokens, tokens)
    for weights in layers:
        mixed = residual * weights.double().mean(1) + (1 - residual) * torch.eye(tokens, dtype=torch.float64,
                                                                                   device=weights.device)
        rollout = (mixed / mixed.sum(-1, keepdim=True)) @ rollout
    source = rollout[:, 0] if layout.prefix else rollout.mean(1)
    grid = source[:, layout.prefix:].reshape(len(x), 1, *layout.grid).float()
    maps = F.interpolate(grid, size=x.shape[2:], mode="bilinear", align_corners=False)
    return Explanation(maps, "attention_rollout", subject.gradient_source,
                       {"residual": residual, "layers": len(layers), "class_agnostic": True,
                        "source": "class token" if layout.prefix else "mean of all tokens"})


class _AttentionRecorder(TorchDispatchMode):
    """Keeps every (N, heads, T, T) attention matrix a forward pass computes, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: list[torch.Tensor] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        packet = func.overloadpacket
        if packet in _SOFTMAX and output.ndim == 4 and output.shape[-1] == output.shape[-2]:
            self.weights.append(output.detach())
        elif packet in _FUSED:
            self.weights.append(_fused_weights(*args[:2], kwargs))
        return output


def _fused_weights(query: torch.Tensor, key: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """softmax(q k^T * scale + mask): the weights a fused attention kernel applied without returning them."""
    if kwargs.get("is_causal"):
        raise NoAttentionError("causal attention is not a ViT's: attention rollout applies to image transformers")
    scale = kwargs.get("scale") or 1 / math.sqrt(query.shape[-1])
    scores = (query.double() @ key.double().transpose(-2, -1)) * scale
    mask = kwargs.get("attn_mask")
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else scores + mask.double()
    return scores.softmax(-1)
