"""ImageSet: the one dataset type every kdscope data source produces.

Pixels are stored as uint8 (compact, byte-exact for caching) and handed out as raw float32 NCHW in [0, 1]:
normalisation belongs to the Subject, never to the data. Pixels and masks are in memory, or a `LazyArray` read
batch by batch (an audit of a large folder never decodes it whole).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from kdscope.data.lazy import LazyArray, take_rows

UNLABELLED = -1
"""The target of an image that has no label (a transfer set's, in `PartlyLabelled`)."""


@dataclass
class ImageSet(torch.utils.data.Dataset):
    """Images, labels, optional ground-truth object masks and per-image extras (e.g. texture labels)."""

    pixels: np.ndarray | LazyArray
    labels: np.ndarray
    class_names: tuple[str, ...]
    masks: np.ndarray | LazyArray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    description: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pixels.dtype != np.uint8 or self.pixels.ndim != 4 or self.pixels.shape[1] not in (1, 3):
            raise ValueError(
                f"ImageSet pixels must be uint8 with shape (N, C, H, W), C in (1, 3); got {self.pixels.dtype} "
                f"{self.pixels.shape}. Convert float images with to_uint8() first."
            )
        if self.labels.shape != (len(self.pixels),):
            raise ValueError(f"labels must have shape ({len(self.pixels)},), got {self.labels.shape}")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(
                f"labels must lie in [0, {len(self.class_names) - 1}] for {len(self.class_names)} classes; "
                f"found {int(self.labels.min())}..{int(self.labels.max())}"
            )
        if self.masks is not None and self.masks.shape != (len(self.pixels), *self.pixels.shape[2:]):
            raise ValueError(f"masks must have shape (N, H, W) = {(len(self.pixels), *self.pixels.shape[2:])}")
        self.labels = self.labels.astype(np.int64, copy=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.pixels.shape[1:])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return to_float(self.pixels[index]), int(self.labels[index])

    def images(self, index: np.ndarray | slice | None = None) -> torch.Tensor:
        """Raw float32 images in [0, 1] (all of them, or those at `index`)."""
        return to_float(self.pixels[:] if index is None else self.pixels[index])

    def targets(self, index: np.ndarray | slice | None = None) -> torch.Tensor:
        return torch.from_numpy(self.labels if index is None else self.labels[index])

    def subset(self, index: np.ndarray | slice) -> ImageSet:
        """A new ImageSet holding the chosen images (copies, or views of a lazy source, so the original is never
        changed)."""
        return type(self)(
            pixels=take_rows(self.pixels, index),
            labels=self.labels[index].copy(),
            class_names=self.class_names,
            masks=None if self.masks is None else take_rows(self.masks, index),
            extras={k: v[index].copy() for k, v in self.extras.items()},
            description=dict(self.description),
        )

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images, labels) batches; shuffling draws only from `generator` so runs are reproducible."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, generator=generator).numpy() if shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            yield self.images(index), self.targets(index)

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the raw [0, 1] pixels, for a Subject's normalisation."""
        count = min(len(self), 4096)
        if isinstance(self.pixels, LazyArray):
            mean, std = _chunked_channel_stats(self.pixels, count)
        else:
            sample = self.pixels[:count].astype(np.float64) / 255.0
            mean, std = sample.mean(axis=(0, 2, 3)), sample.std(axis=(0, 2, 3))
        return tuple(float(m) for m in mean), tuple(float(s) for s in std.clip(min=1e-3))

    @property
    def lazy(self) -> bool:
        """True when the pixels are read per batch (`LazyArray`) rather than held in memory."""
        return isinstance(self.pixels, LazyArray)


class PartlyLabelled(ImageSet):
    """Labelled images and unlabelled ones in one set (distillation on a transfer set): `extras["labelled"]` says
    which images have a label, and `targets` gives `UNLABELLED` for the others, so no loss can read a label that
    was never given."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.extras.get("labelled") is None or self.extras["labelled"].shape != self.labels.shape:
            raise ValueError("PartlyLabelled needs extras['labelled'], one bool per image")

    def targets(self, index: np.ndarray | slice | None = None) -> torch.Tensor:
        labels = np.where(self.extras["labelled"], self.labels, UNLABELLED)
        return torch.from_numpy(labels if index is None else labels[index])


def _chunked_channel_stats(pixels: LazyArray, count: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the first `count` images, read `chunk` at a time."""
    total = np.zeros(pixels.shape[1])
    squares = np.zeros(pixels.shape[1])
    for start in range(0, count, chunk):
        part = pixels[start:min(start + chunk, count)].astype(np.float64) / 255.0
        total += part.sum(axis=(0, 2, 3))
        squares += (part * part).sum(axis=(0, 2, 3))
    values = count * pixels.shape[2] * pixels.shape[3]
    mean = total / values
    return mean, np.sqrt(np.maximum(squares / values - mean * mean, 0.0))


def to_float(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (..., C, H, W) -> float32 tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).to(torch.float32).div_(255.0)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float images in [0, 1] -> uint8, rounding to nearest."""
    return np.clip(np.rint(np.asarray(images, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
