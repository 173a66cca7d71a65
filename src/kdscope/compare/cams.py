"""Do two models look at the same place? Grad-CAM agreement per image (cosine, Spearman, top-k% IoU), and the
statistic of Ojha et al. 2023: the share of images where the teacher's map is closer to the distilled student's
than to the independent student's (about 50% means nothing was transferred). Its control is the same statistic
with two independent students."""

from __future__ import annotations

import numpy as np
import torch

from kdscope.core.stats import bootstrap_ci, spearman_rows
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
    """Per image, Spearman correlation of two (N, H, W) maps; 0 where either map is constant (no ranking to agree
    on), NaN where a map holds a NaN."""
    constant = [(m.flatten(1).amax(1) == m.flatten(1).amin(1)).cpu().numpy() for m in (first, second)]
    return np.where(constant[0] | constant[1], 0.0, spearman_rows(first, second))


def gradcam_maps(subject: Subject, x: torch.Tensor, y: torch.Tensor, layer: str | None = None) -> torch.Tensor:
    """(N, H, W) Grad-CAM maps of the ground-truth classes, at the input resolution."""
    return explain(subject, x, y, method="gradcam", layer=layer).maps_2d.detach()


class MapAgreementAccumulator:
    """Agreement of two models' (N, H, W) maps, batch by batch: per image cosine, Spearman and top-k% IoU (three
    numbers kept per image); `compute` gives each mean with its 95% bootstrap interval over every image seen."""

    def __init__(self, fraction: float = 0.2) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
        self.fraction = fraction
        self.outcomes: dict[str, list[np.ndarray]] = {"cosine": [], "spearman": [], "top_iou": []}

    def update(self, first: torch.Tensor, second: torch.Tensor) -> MapAgreementAccumulator:
        if first.shape != second.shape:
            raise ValueError(f"the two models' maps need the same shape, got {tuple(first.shape)} and "
                             f"{tuple(second.shape)}")
        for name, values in (("cosine", cosine(first, second)), ("spearman", spearman(first, second)),
                             ("top_iou", top_k_iou(first, second, self.fraction))):
            self.outcomes[name].append(values)
        return self

    def merge(self, other: MapAgreementAccumulator) -> MapAgreementAccumulator:
        """Add the images another accumulator saw (after this one's): equal to one pass over both."""
        if other.fraction != self.fraction:
            raise ValueError(f"cannot merge top-{self.fraction:.0%} and top-{other.fraction:.0%} IoU")
        for name, values in other.outcomes.items():
            self.outcomes[name].extend(values)
        return self

    def compute(self) -> dict[str, tuple[float, float, float]]:
        """{'cosine', 'spearman', 'top{K}_iou'} -> (mean, low, high)."""
        return {"cosine": _interval(self.outcomes["cosine"]), "spearman": _interval(self.outcomes["spearman"]),
                f"top{round(self.fraction * 100)}_iou": _interval(self.outcomes["top_iou"])}


class OjhaAccumulator:
    """Ojha et al.'s closer-share test, batch by batch, from Grad-CAM maps: per image, 1 when the teacher's map is
    closer (cosine) to the distilled student's than to the independent student's (0.5 on a tie); given a second
    independent student's maps (`control`), the same share with it in the distilled student's place, which should
    be about 50%. `compute` gives each share with its 95% bootstrap interval."""

    def __init__(self) -> None:
        self.distilled: list[np.ndarray] = []
        self.control: list[np.ndarray] | None = None

    def update(self, teacher: torch.Tensor, distilled: torch.Tensor, independent: torch.Tensor,
               control: torch.Tensor | None = None) -> OjhaAccumulator:
        if self.distilled and (control is None) != (self.control is None):
            raise ValueError("give the control's maps in every batch or in none")
        self.distilled.append(closer_share(teacher, distilled, independent))
        if control is not None:
            self.control = [*(self.control or []), closer_share(teacher, control, independent)]
        return self

    def merge(self, other: OjhaAccumulator) -> OjhaAccumulator:
        """Add the images another accumulator saw (after this one's): equal to one pass over both."""
        if self.distilled and other.distilled and (self.control is None) != (other.control is None):
            raise ValueError("cannot merge a test with its control and one without")
        self.distilled.extend(other.distilled)
        if other.control is not None:
            self.control = [*(self.control or []), *other.control]
        return self

    def compute(self) -> dict[str, tuple[float, float, float]]:
        """{'distilled_closer'} and, with a control, {'control_closer'} -> (share, low, high)."""
        result = {"distilled_closer": _interval(self.distilled)}
        if self.control is not None:
            result["control_closer"] = _interval(self.control)
        return result


def _interval(batches: list[np.ndarray]) -> tuple[float, float, float]:
    if not batches:
        raise ValueError("no images were seen: call update first")
    return bootstrap_ci(np.concatenate(batches))


def cam_agreement(first: Subject, second: Subject, x: torch.Tensor, y: torch.Tensor, *,
                  fraction: float = 0.2) -> dict[str, tuple[float, float, float]]:
    """Mean cosine, Spearman and top-k% IoU between two models' Grad-CAM maps, with 95% bootstrap intervals."""
    return MapAgreementAccumulator(fraction).update(gradcam_maps(first, x, y), gradcam_maps(second, x, y)).compute()


def closer_share(reference: torch.Tensor, candidate: torch.Tensor, other: torch.Tensor) -> np.ndarray:
    """Per image: 1 if `reference` is closer (cosine) to `candidate` than to `other`, 0.5 on a tie, else 0."""
    to_candidate, to_other = cosine(reference, candidate), cosine(reference, other)
    return np.where(to_candidate > to_other, 1.0, np.where(to_candidate == to_other, 0.5, 0.0))


def ojha_statistic(teacher: Subject, distilled: Subject, independent: Subject, x: torch.Tensor, y: torch.Tensor, *,
                   control: Subject | None = None) -> dict[str, tuple[float, float, float]]:
    """Share of images whose teacher map is closer to the distilled student's than to the independent student's,
    with its interval; with `control` (a second independent student), the same share for control vs independent."""
    control_maps = None if control is None else gradcam_maps(control, x, y)
    return OjhaAccumulator().update(gradcam_maps(teacher, x, y), gradcam_maps(distilled, x, y),
                                    gradcam_maps(independent, x, y), control_maps).compute()
