"""scikit-learn's bundled handwritten digits (1,797 images, 8x8, grey) as a small real-data set in RGB."""

from __future__ import annotations

import cv2
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from kdscope.data.imageset import ImageSet, to_uint8


def digits(*, split: str = "train", size: int = 32, test_fraction: float = 0.25, seed: int = 0) -> ImageSet:
    """Stratified train/test split of the digits, bilinearly resized to `size` and repeated to three channels."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if size < 8:
        raise ValueError(f"size must be >= 8 (the digits are 8x8), got {size}")
    bunch = load_digits()
    index = np.arange(len(bunch.target))
    train_index, test_index = train_test_split(
        index, test_size=test_fraction, random_state=seed, stratify=bunch.target
    )
    chosen = np.sort(train_index if split == "train" else test_index)
    grey = bunch.images[chosen].astype(np.float32) / 16.0
    resized = np.stack([cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR) for image in grey])
    pixels = to_uint8(np.repeat(resized[:, None], 3, axis=1))
    return ImageSet(
        pixels=pixels,
        labels=bunch.target[chosen].astype(np.int64),
        class_names=tuple(str(d) for d in range(10)),
        description={"dataset": "digits", "split": split, "size": size, "test_fraction": test_fraction,
                     "seed": seed},
    )
