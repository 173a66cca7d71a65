"""A PNG contact sheet of a dataset and its variants, with ground-truth masks outlined."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kdscope.data.imageset import ImageSet


def preview_grid(rows: dict[str, ImageSet], *, columns: int = 10, scale: int = 3, outline: bool = True) -> np.ndarray:
    """One row per named ImageSet (first `columns` images), upscaled; returns an RGB uint8 array.

    Where a set has masks, the object's outline is drawn in white so masks can be checked against the objects.
    """
    if not rows:
        raise ValueError("nothing to preview: pass at least one dataset")
    tiles = []
    for name, data in rows.items():
        count = min(columns, len(data))
        images = data.pixels[:count].transpose(0, 2, 3, 1)
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        row = []
        for index, image in enumerate(images):
            big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            if outline and data.masks is not None:
                mask = cv2.resize(data.masks[index].astype(np.uint8), None, fx=scale, fy=scale,
                                  interpolation=cv2.INTER_NEAREST)
                contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                big = cv2.drawContours(np.ascontiguousarray(big), contours, -1, (255, 255, 255), 1)
            row.append(cv2.copyMakeBorder(big, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
        row += [np.full_like(row[0], 255)] * (columns - count)
        strip = np.concatenate(row, axis=1)
        label = np.full((16, strip.shape[1], 3), 255, np.uint8)
        cv2.putText(label, name, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        tiles += [label, strip]
    return np.concatenate(tiles, axis=0)


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {path}; check the folder exists and the suffix is .png")
    return path
