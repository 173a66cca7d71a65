"""Display helpers, kept apart from computation: explicit normalisation and colour-mapped overlays.

Scaling is shared across a group of maps by default (per-image scaling would hide differences between models),
with percentile clipping so one extreme pixel does not wash a map out.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch


def normalize_maps(maps: Sequence[torch.Tensor], *, shared: bool = True, percentile: float = 99.0,
                   signed: bool = False) -> list[torch.Tensor]:
    """(N, H, W) or (N, C, H, W) maps -> (N, H, W) in [0, 1] ([-1, 1] when `signed`), clipped at the `percentile`
    of |value|, computed over the whole group when `shared`, else per map tensor."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    flat = [m.detach().float().cpu().sum(1) if m.ndim == 4 else m.detach().float().cpu() for m in maps]
    values = [m if signed else m.clamp(min=0) for m in flat]

    def scale_of(tensors: list[torch.Tensor]) -> float:
        pooled = torch.cat([t.abs().flatten() for t in tensors])
        return max(float(torch.quantile(pooled[:2_000_000], percentile / 100)), 1e-12)

    shared_scale = scale_of(values) if shared else None
    low = -1.0 if signed else 0.0
    return [(v / (shared_scale or scale_of([v]))).clamp(low, 1.0) for v in values]


def overlay(image: torch.Tensor, heat: torch.Tensor, *, alpha: float = 0.5,
            colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """One RGB uint8 image (H, W, 3): the raw (C, H, W) image under a [0, 1] heat map coloured by OpenCV.
    OpenCV's colour maps come out BGR; they are converted to RGB here so the result can go straight to PNG/PIL."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    rgb = (image.detach().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    heat_u8 = (heat.detach().cpu().abs().clamp(0, 1) * 255).round().byte().numpy()
    coloured = cv2.cvtColor(cv2.applyColorMap(heat_u8, colormap), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1 - alpha, coloured, alpha, 0)
