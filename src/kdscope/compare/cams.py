"""Do two models look at the same place? Grad-CAM agreement per image (cosine, Spearman, top-k% IoU), and the
statistic of Ojha et al. 2023: the share of images where the teacher's map is closer to the distilled student's
than to the independent student's (about 50% means nothing was transferred). Its control is the same statistic
with two independent students."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr

from kdscope.core.stats import bootstrap_ci
from kdscope.core.subject import Subject
from kdscope.explainers import explain


def cosine(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
    """Per image, cosine similarity of two (N, H, W) maps (0 where either map is all zero)."""
    a, b = first.flatten(1).double(), second.flatten(1).double()
    norms = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(norms > 0, (a * b).sum(1) / norms.clamp(min=1e-300), 0.0).cpu().numpy()


def top_k_iou(first: torch.Tensor, second: torch.Tensor, fraction: float = 0.2) -> np.ndarray:
    """Per image, intersection over union of the top `fraction` of pixels of each map."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    a, b = first.flatten(1), second.flatten(1)
    k = max(1, round(fraction * a.shape[1]))
    top_a = torch.zeros_like(a, dtype=torch.bool).scatter(1, a.topk(k, dim=1).indices, True)
    top_b = torch.zeros_like(b, dtype=torch.bool).scatter(1, b.topk(k, dim=1).indices, True)
    return ((top_a & top_b).sum(1).double() / (top_a | top_b).sum(1).double()).cpu().numpy()


def spearman(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
    a, b = first.flatten(1).cpu().numpy(), second.flatten(1).cpu().numpy()
    return np.array([spearmanr(x, y).statistic if np.ptp(x) and np.ptp(y) else 0.0 for x, y in zip(a, b)])


def gradcam_maps(subject: Subject, x: torch.Tensor, y: torch.Tensor, layer: str | None = None) -> torch.Tensor:
    """(N, H, W) Grad-CAM maps of the ground-truth classes, at the input resolution."""
    return explain(subject, x, y, method="gradcam", layer=layer).maps_2d.detach()


def cam_agreement(first: Subject, second: Subject, x: torch.Tensor, y: torch.Tensor, *,
                  fraction: float = 0.2) -> dict[str, tuple[float, float, float]]:
    """Mean cosine, Spearman and top-k% IoU between two models' Grad-CAM maps, with 95% bootstrap intervals."""
    return map_agreement(gradcam_maps(first, x, y), gradcam_maps(second, x, y), fraction)


def map_agreement(a: torch.Tensor, b: torch.Tensor, fraction: float = 0.2) -> dict[str, tuple[float, float, float]]:
    """`cam_agreement` from (N, H, W) maps already computed."""
    return {"cosine": bootstrap_ci(cosine(a, b)), "spearman": bootstrap_ci(spearman(a, b)),
            f"top{round(fraction * 100)}_iou": bootstrap_ci(top_k_iou(a, b, fraction))}


def closer_share(reference: torch.Tensor, candidate: torch.Tensor, other: torch.Tensor) -> np.ndarray:
    """Per image: 1 if `reference` is closer (cosine) to `candidate` than to `other`, 0.5 on a tie, else 0."""
    to_candidate, to_other = cosine(reference, candidate), cosine(reference, other)
    return np.where(to_candidate > to_other, 1.0, np.where(to_candidate == to_other, 0.5, 0.0))


def ojha_statistic(teacher: Subject, distilled: Subject, independent: Subject, x: torch.Tensor, y: torch.Tensor, *,
                   control: Subject | None = None) -> dict[str, tuple[float, float, float]]:
    """Share of images whose teacher map is closer to the distilled student's than to the independent student's,
    with its interval; with `control` (a second independent student), the same share for control vs independent."""
    teacher_maps = gradcam_maps(teacher, x, y)
    independent_maps = gradcam_maps(independent, x, y)
    result = {"distilled_closer": bootstrap_ci(closer_share(teacher_maps, gradcam_maps(distilled, x, y),
                                                            independent_maps))}
    if control is not None:
        result["control_closer"] = bootstrap_ci(closer_share(teacher_maps, gradcam_maps(control, x, y),
                                                             independent_maps))
    return result
