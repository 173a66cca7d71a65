"""Which images an audit uses: a seeded sample stratified by class, so that capping the number of images never
audits only the first few classes of a class-sorted folder."""

from __future__ import annotations

import numpy as np


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of `n` images (all when n >= len), each class drawn in proportion to its share (largest
    remainders get the leftover places), images within a class drawn at random with `seed`."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / len(labels)
    taken = np.floor(quota).astype(int)
    leftover = n - int(taken.sum())
    taken[np.argsort(-(quota - taken), kind="stable")[:leftover]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == cls))[:k] for cls, k in zip(classes, taken)]
    return np.sort(np.concatenate(chosen))
