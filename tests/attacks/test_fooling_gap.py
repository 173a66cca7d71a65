"""Ojha et al.'s fooling gap on hand-made predictions: only images that fool the source and that both models get
right when clean count, and the gap is the paired difference of who is fooled."""

import math

import numpy as np
import pytest

from kdscope.attacks.transfer import fooling_gap


def test_fooling_gap_counts_only_eligible_images_and_pairs_them():
    y = np.array([0, 1, 2, 3, 4, 5])
    source_clean = np.array([0, 1, 2, 3, 4, 9])          # image 5: the source is wrong when clean
    source_adv = np.array([9, 9, 9, 9, 4, 9])            # image 4: the attack does not fool the source
    student = (np.array([0, 1, 2, 9, 4, 5]), np.array([9, 9, 2, 9, 4, 5]))   # image 3: student wrong when clean
    control = (np.array([0, 1, 2, 3, 4, 5]), np.array([0, 9, 2, 9, 4, 5]))
    (estimate, low, high), images = fooling_gap(y, source_clean, source_adv, student, control)
    assert images == 3                                   # images 0, 1, 2
    assert estimate == pytest.approx(1 / 3)          # fooled: student on 0 and 1, control on 1
    assert low <= estimate <= high


def test_no_eligible_image_gives_nan_and_zero():
    y = np.zeros(3, int)
    same = np.zeros(3, int)
    interval, images = fooling_gap(y, same, same, (same, same), (same, same))
    assert images == 0 and all(math.isnan(v) for v in interval)
