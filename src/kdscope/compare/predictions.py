"""Do two models decide alike, and how well calibrated is each? Top-1 agreement, KL and JS between output
distributions, per-class accuracy, expected calibration error; each with a bootstrap interval over images."""

from __future__ import annotations

import numpy as np
import torch

from kdscope.core.stats import bootstrap_ci
from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet


@torch.no_grad()
def probabilities(subject: Subject, data: ImageSet, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([subject.logits(x).float().softmax(1).cpu() for x, _ in data.batches(batch_size)])


def agreement(first: torch.Tensor, second: torch.Tensor) -> dict[str, tuple[float, float, float]]:
    """Top-1 agreement, KL(first || second) and Jensen-Shannon divergence (nats) from two (N, K) probability
    matrices, as (mean, low, high)."""
    return {name: bootstrap_ci(values) for name, values in agreement_outcomes(first, second).items()}


def agreement_outcomes(first: torch.Tensor, second: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: the same top-1 class (1/0), KL(first || second) and JS divergence; what `agreement` averages,
    kept per image so that batches and processes can be joined before the interval is drawn."""
    p, q = first.double().clamp(min=1e-12), second.double().clamp(min=1e-12)
    middle = (p + q) / 2
    kl = (p * (p / q).log()).sum(1)
    js = 0.5 * (p * (p / middle).log()).sum(1) + 0.5 * (q * (q / middle).log()).sum(1)
    same = (first.argmax(1) == second.argmax(1)).double()
    return {"top1_agreement": same.cpu().numpy(), "kl": kl.cpu().numpy(), "js": js.cpu().numpy()}


def correct(probs: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per image: 1.0 where the top-1 class is the label."""
    return (probs.argmax(1).cpu() == torch.as_tensor(labels).cpu()).double().numpy()


def accuracy_with_interval(probs: torch.Tensor, labels: torch.Tensor, *, seed: int = 0) -> tuple[float, float, float]:
    """Top-1 accuracy with its 95% bootstrap interval over images."""
    return bootstrap_ci(correct(probs, labels), seed=seed)


def per_class_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    return per_class_of(correct(probs, labels), np.asarray(labels))


def per_class_of(hits: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """Accuracy of each class present, from per-image hits (1/0)."""
    return {int(c): float(hits[labels == c].mean()) for c in np.unique(labels)}


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """sum_b |B_b| / N * |accuracy(B_b) - confidence(B_b)| over equal-width confidence bins (Guo et al. 2017)."""
    return float(_ece(_calibration_rows(probs, labels), bins))


def ece_with_interval(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> tuple[float, float, float]:
    outcomes = prediction_outcomes(probs, labels)
    return ece_interval_of(outcomes["confidence"], outcomes["correct"], bins)


def ece_interval_of(confidence: np.ndarray, hits: np.ndarray, bins: int = 15) -> tuple[float, float, float]:
    """ECE with its 95% bootstrap interval from per-image confidences and hits."""
    return bootstrap_ci(np.column_stack([confidence, hits]), lambda sample: _ece(sample, bins))


def prediction_outcomes(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: whether the top-1 class is right (1/0) and its probability: all that accuracy, per-class
    accuracy and ECE need, so a stream of batches keeps two numbers per image rather than K probabilities."""
    return {"correct": correct(probs, labels), "confidence": probs.max(1).values.double().cpu().numpy()}


def _calibration_rows(probs: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """(N, 2): each image's confidence (top-1 probability) and whether the top-1 class is right."""
    outcomes = prediction_outcomes(probs, labels)
    return np.column_stack([outcomes["confidence"], outcomes["correct"]])


def _ece(rows: np.ndarray, bins: int) -> float:
    confidence, correct = rows[:, 0], rows[:, 1]
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return total
