"""The HOG similarity's descriptor against Dalal & Triggs' definition written out cell by cell and block by block,
and on a ramp whose gradients all point one way."""

import cv2
import numpy as np
import pytest

from kdscope.explainers.similarity import _hog


def _hog_by_cells(image: np.ndarray, cell: int = 4, bins: int = 9) -> np.ndarray:
    gx = cv2.Sobel(image.astype(np.float32), cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(image.astype(np.float32), cv2.CV_32F, 0, 1, ksize=1)
    magnitude = np.hypot(gx, gy)
    index = np.minimum((np.rad2deg(np.arctan2(gy, gx)) % 180 / (180 / bins)).astype(int), bins - 1)
    rows, cols = image.shape[0] // cell, image.shape[1] // cell
    histogram = np.zeros((rows, cols, bins))
    for r in range(rows):
        for c in range(cols):
            window = np.s_[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell]
            histogram[r, c] = np.bincount(index[window].ravel(), magnitude[window].ravel(), minlength=bins)
    blocks = [histogram[r:r + 2, c:c + 2].ravel() for r in range(rows - 1) for c in range(cols - 1)]
    return np.concatenate([b / np.sqrt((b ** 2).sum() + 1e-12) for b in blocks]) if blocks else histogram.ravel()


@pytest.mark.parametrize("shape", [(32, 32), (30, 27), (7, 9), (4, 40), (3, 3)])
def test_hog_equals_the_cell_by_cell_definition(shape):
    image = np.random.default_rng(sum(shape)).random(shape)
    np.testing.assert_allclose(_hog(image), _hog_by_cells(image), rtol=1e-12, atol=1e-15)


def test_a_horizontal_ramp_puts_every_gradient_in_the_first_bin():
    ramp = np.tile(np.linspace(0, 1, 16), (16, 1))
    blocks = _hog(ramp).reshape(-1, 4, 9)
    assert np.all(blocks[:, :, 1:] == 0) and np.all(blocks[:, :, 0] > 0)
    np.testing.assert_allclose(np.linalg.norm(blocks.reshape(len(blocks), -1), axis=1), 1.0, rtol=1e-9)
