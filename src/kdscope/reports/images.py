"""Images for the report: heat maps overlaid on their input, one colour scale per image and method shared by every
model in the row, encoded as compact base64 WebP data URIs."""

from __future__ import annotations

import base64

import cv2
import numpy as np

DISPLAY_SIZE = 96
PERCENTILE = 99.0


def data_uri(rgb: np.ndarray, quality: int = 85) -> str:
    """A `data:image/webp;base64,...` URI for an (H, W, 3) uint8 RGB image."""
    ok, encoded = cv2.imencode(".webp", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode WebP; install opencv-python-headless with WebP support")
    return "data:image/webp;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def shared_scale(maps: list[np.ndarray]) -> float:
    """The `PERCENTILE`th percentile of |map| over all the maps in a row: one scale for the models compared."""
    values = np.concatenate([np.abs(m).ravel() for m in maps])
    scale = float(np.percentile(values, PERCENTILE)) if values.size else 0.0
    return scale if scale > 0 else 1.0


def enlarge(rgb: np.ndarray, size: int = DISPLAY_SIZE) -> np.ndarray:
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_NEAREST)


def overlay(image: np.ndarray, heat: np.ndarray, scale: float, size: int = DISPLAY_SIZE,
            alpha: float = 0.6) -> np.ndarray:
    """The heat map (|values| / scale, clipped to [0, 1], inferno colours) over a grey copy of the image."""
    level = np.clip(np.abs(heat) / scale, 0.0, 1.0)
    level = cv2.resize(level.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.cvtColor(cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_INFERNO),
                            cv2.COLOR_BGR2RGB)
    grey = cv2.cvtColor(cv2.cvtColor(enlarge(image, size), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(coloured, alpha, grey, 1 - alpha, 0)


def colour_bar(width: int = 160, height: int = 10) -> np.ndarray:
    ramp = np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))
    return cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
