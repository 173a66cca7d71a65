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


def spearman_rows(first: torch.Tensor, second: torch.Tensor, *, chunk: int = 32) -> np.ndarray:
    """Spearman's rank correlation of each row of `first` with the same row of `second` ((N, ...) tensors of one
    shape, rows flattened): the Pearson correlation of their average ranks. NaN where either row is constant (no
    ranking) or holds a NaN (as scipy's default). Rows go `chunk` at a time, so memory stays that of a few maps."""
    if first.shape != second.shape:
        raise ValueError(f"need two tensors of one shape, got {tuple(first.shape)} and {tuple(second.shape)}")
    a_all, b_all = first.detach().flatten(1).cpu(), second.detach().flatten(1).cpu()
    parts = []
    for start in range(0, len(a_all), chunk):
        a_raw, b_raw = a_all[start:start + chunk], b_all[start:start + chunk]
        a, b = average_ranks(a_raw), average_ranks(b_raw)
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        spread = ((a * a).sum(1) * (b * b).sum(1)).sqrt()
        defined = (spread > 0) & ~(a_raw.isnan().any(1) | b_raw.isnan().any(1))
        parts.append(torch.where(defined, (a * b).sum(1) / spread, torch.nan))
    return torch.cat(parts).numpy() if parts else np.empty(0)
