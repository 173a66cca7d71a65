"""SHAP, built on captum: gradient SHAP (expected gradients over reference images) for differentiable models, and
Shapley value sampling over superpixels, which needs only forward passes and so explains an int8 model directly.

Permutation sampling satisfies efficiency exactly: every sampled order's marginal contributions sum to
f(x) - f(baseline), so their average does too. captum is imported when a SHAP method runs, not with kdscope.
"""

from __future__ import annotations

import numpy as np
import torch

from kdscope.core.subject import RawInputModel, Subject
from kdscope.explainers.base import Explanation, check_explain_inputs, frozen


def grid_superpixels(height: int, width: int, cell: int) -> torch.Tensor:
    """(1, 1, H, W) feature ids: square cells of `cell` pixels, row by row (shared by all channels)."""
    if cell < 1:
        raise ValueError(f"cell must be >= 1, got {cell}")
    rows = torch.arange(height).view(-1, 1) // cell
    cols = torch.arange(width).view(1, -1) // cell
    return (rows * ((width + cell - 1) // cell) + cols).view(1, 1, height, width)


def gradient_shap(subject: Subject, x: torch.Tensor, target: torch.Tensor, *, baselines: torch.Tensor | None = None,
                  samples: int = 32, stdev: float = 0.0, seed: int = 0) -> Explanation:
    """Expected gradients: E over reference images r and alpha ~ U(0, 1) of grad f(r + alpha (x - r)) * (x - r).
    References default to a black and a white image and uniform grey (a batch of data images is a better choice).
    captum draws from torch's and numpy's global generators: both are seeded here and restored afterwards."""
    target = check_explain_inputs(subject, x, target)
    x = x.to(subject.device)
    if baselines is None:
        baselines = torch.stack([torch.full_like(x[0], v) for v in (0.0, 0.5, 1.0)])
    from captum.attr import GradientShap

    numpy_state = np.random.get_state()
    try:
        with subject.guard(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)
            frozen(subject)
            maps = GradientShap(RawInputModel(subject, use_twin=True)).attribute(
                x, baselines=baselines.to(x.device), target=target, n_samples=samples, stdevs=stdev)
    finally:
        np.random.set_state(numpy_state)
    return Explanation(maps.detach(), "gradient_shap", subject.gradient_source,
                       {"samples": samples, "stdev": stdev, "seed": seed})


@torch.no_grad()
def superpixel_shap(subject: Subject, x: torch.Tensor, target: torch.Tensor, *, cell: int = 4,
                    baseline: float = 0.5, permutations: int = 8, batch_size: int = 256,
                    seed: int = 0) -> Explanation:
    """Shapley values of square superpixels (all channels together) by permutation sampling; each pixel carries its
    superpixel's value divided by the superpixel's size, so a map sums to f(x) - f(baseline)."""
    from captum.attr import ShapleyValueSampling

    target = check_explain_inputs(subject, x, target)
    x = x.to(subject.device)
    mask = grid_superpixels(x.shape[2], x.shape[3], cell).to(x.device)
    with subject.guard(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        values = ShapleyValueSampling(RawInputModel(subject)).attribute(
            x, baselines=baseline, target=target, feature_mask=mask, n_samples=permutations,
            perturbations_per_eval=max(1, batch_size // len(x)))
    sizes = torch.bincount(mask.flatten()).float()[mask]
    maps = values[:, :1] / sizes
    return Explanation(maps, "superpixel_shap", subject.forward_source,
                       {"cell": cell, "baseline": baseline, "permutations": permutations, "seed": seed})
