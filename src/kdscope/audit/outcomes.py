"""What a stage keeps of the batches it has seen: per-image arrays, joined in image order, and accumulators
(anything with `merge`), merged in image order. Joining in a fixed order is what makes one process and many give
the same numbers, bootstrap intervals included."""

from __future__ import annotations

import numpy as np


class Outcomes:
    """A stage's outcomes over every batch so far. `add` one batch's parts (key -> array or accumulator)."""

    def __init__(self) -> None:
        self._arrays: dict[str, list[np.ndarray]] = {}
        self._accumulators: dict[str, object] = {}

    def add(self, parts: dict) -> None:
        for key, value in parts.items():
            if isinstance(value, np.ndarray):
                self._arrays.setdefault(key, []).append(value)
            elif key in self._accumulators:
                self._accumulators[key] = self._accumulators[key].merge(value)
            else:
                self._accumulators[key] = value

    def has(self, key: str) -> bool:
        return key in self._arrays or key in self._accumulators

    def array(self, key: str) -> np.ndarray:
        """Every batch's values under `key`, in image order."""
        if key not in self._arrays:
            raise KeyError(f"no batch measured {key!r}")
        return np.concatenate(self._arrays[key])

    def accumulator(self, key: str) -> object:
        if key not in self._accumulators:
            raise KeyError(f"no batch measured {key!r}")
        return self._accumulators[key]
