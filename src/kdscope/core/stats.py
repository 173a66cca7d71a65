"""Bootstrap confidence intervals (every statistic kdscope reports comes with one) and the rank correlation that
map comparisons compute per image, vectorised over images."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def bootstrap_ci(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(estimate, low, high): percentile bootstrap over the first axis (images), seeded."""
    values = np.asarray(values)
    if len(values) == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(values), (resamples, len(values)))
    if statistic is np.mean:
        draws = values[index].mean(axis=1)
    else:
        draws = np.array([statistic(values[i]) for i in index])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(statistic(values)), float(low), float(high)


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Per row of an (N, P) tensor, the ranks 1..P of its values with tied values sharing their average rank (as
    scipy's rankdata), in float64: one sort per row rather than rankdata's per-row Python work."""
    rows, width = values.shape
    ordered, order = values.sort(dim=1, stable=True)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = starts.cumsum(1) - 1
    position = torch.arange(width).expand(rows, width)
    first = torch.full((rows, width), width).scatter_reduce(1, group, position, "amin")
    last = torch.zeros((rows, width), dtype=torch.long).scatter_reduce(1, group, position, "amax")
    shared = ((first + last).double() / 2 + 1).gather(1, group)
    return torch.empty_like(shared).scatter_(1, order, shared)


def spearman_rows(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
    """Spearman's rank correlation of each row of `first` with the same row of `second` ((N, ...) tensors, rows
    flattened): the Pearson correlation of their average ranks. NaN where either row is constant (no ranking)."""
    a, b = average_ranks(first.detach().flatten(1).cpu()), average_ranks(second.detach().flatten(1).cpu())
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    spread = ((a * a).sum(1) * (b * b).sum(1)).sqrt()
    correlation = (a * b).sum(1) / spread
    return torch.where(spread > 0, correlation, torch.nan).numpy()
