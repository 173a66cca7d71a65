"""How alike two saliency maps are, per image (Adebayo et al. 2018): Spearman rank correlation of |map| and of the
signed map, SSIM, and the correlation of HOG features; and how well a map points at the object (pointing game,
relevance mass inside the ground-truth mask)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from kdscope.core.stats import spearman_rows

METRICS = ("spearman_abs", "spearman_signed", "ssim", "hog")


def degenerate_maps(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
    """Per image: is either map constant? A constant map has no ranking, so its rank correlation is undefined
    (NaN in `map_similarity`), neither 'unchanged' nor 'completely changed'."""
    a, b = (m.detach().float().abs().flatten(1).cpu() for m in (first, second))
    return ((a.amax(1) == a.amin(1)) | (b.amax(1) == b.amin(1))).numpy()


def map_similarity(first: torch.Tensor, second: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image similarity of two (N, H, W) map batches, every metric in METRICS; rank and HOG correlations are
    NaN for an image where either map is constant (see `degenerate_maps`), HOG also for maps smaller than one HOG
    cell (a 1-D signal as a (1, L) map has no oriented gradients to bin)."""
    a, b = first.detach().float().cpu().numpy(), second.detach().float().cpu().numpy()
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"need two (N, H, W) map batches of one shape, got {a.shape} and {b.shape}")
    result = {name: np.empty(len(a)) for name in METRICS}
    magnitude_a, magnitude_b = np.abs(a), np.abs(b)
    result["spearman_abs"] = spearman_rows(torch.from_numpy(magnitude_a), torch.from_numpy(magnitude_b))
    unsigned = (a >= 0).all() and (b >= 0).all()  # then the signed ranking is the same ranking
    result["spearman_signed"] = (result["spearman_abs"].copy() if unsigned else
                                 spearman_rows(torch.from_numpy(a), torch.from_numpy(b)))
    for i in range(len(a)):
        ua, ub = _unit(np.abs(a[i])), _unit(np.abs(b[i]))
        result["ssim"][i] = ssim(ua, ub)
        result["hog"][i] = _pearson(_hog(ua), _hog(ub))
    return result


def ssim(a: np.ndarray, b: np.ndarray, *, sigma: float = 1.5) -> float:
    """Mean structural similarity of two [0, 1] images (Wang et al. 2004, Gaussian window, K1=0.01, K2=0.03)."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (0, 0), sigma)

    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    covariance = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * covariance + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """Per image: is the largest |map| value inside the object mask?"""
    flat = maps.detach().abs().flatten(1).cpu()
    inside = masks.flatten(1).bool().cpu()
    return inside.gather(1, flat.argmax(1, keepdim=True)).squeeze(1).numpy()


def relevance_mass(maps: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """Per image: the share of positive relevance that falls inside the object mask (0 when there is none)."""
    positive = maps.detach().clamp(min=0).flatten(1).cpu().double()
    inside = (positive * masks.flatten(1).cpu().double()).sum(1)
    return (inside / positive.sum(1).clamp(min=1e-12)).numpy()


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _unit(a: np.ndarray) -> np.ndarray:
    span = a.max() - a.min()
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


def _hog(image: np.ndarray, cell: int = 4, bins: int = 9) -> np.ndarray:
    """Histogram of oriented gradients (Dalal & Triggs 2005) of a [0, 1] map: unsigned orientations in `bins` bins
    per `cell` x `cell` cell, weighted by gradient magnitude, each 2x2-cell block L2-normalised. (OpenCV 5 no
    longer ships HOGDescriptor, so it is written out here.)"""
    gx = cv2.Sobel(image.astype(np.float32), cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(image.astype(np.float32), cv2.CV_32F, 0, 1, ksize=1)
    magnitude = np.hypot(gx, gy)
    orientation = np.rad2deg(np.arctan2(gy, gx)) % 180
    index = np.minimum((orientation / (180 / bins)).astype(int), bins - 1)
    rows, cols = image.shape[0] // cell, image.shape[1] // cell
    cell_of = (np.arange(rows * cell)[:, None] // cell) * cols + np.arange(cols * cell)[None, :] // cell
    within = np.s_[:rows * cell, :cols * cell]
    histogram = np.bincount((cell_of * bins + index[within]).ravel(), magnitude[within].ravel().astype(np.float64),
                            minlength=rows * cols * bins).reshape(rows, cols, bins)
    if rows < 2 or cols < 2:
        return histogram.ravel()
    blocks = np.stack([histogram[:-1, :-1], histogram[:-1, 1:], histogram[1:, :-1], histogram[1:, 1:]], axis=2)
    blocks = blocks.reshape((rows - 1) * (cols - 1), 4 * bins)
    return (blocks / np.sqrt((blocks ** 2).sum(axis=1, keepdims=True) + 1e-12)).ravel()
