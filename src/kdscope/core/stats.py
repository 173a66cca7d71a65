"""Bootstrap confidence intervals: every statistic kdscope reports comes with one."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


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
