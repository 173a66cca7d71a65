"""CAM agreement and prediction comparison against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdscope.compare.cams import closer_share, cosine, ojha_statistic, top_k_iou
from kdscope.compare.predictions import agreement, ece_with_interval, expected_calibration_error, per_class_accuracy


def test_cosine_and_top_k_iou_by_hand():
    a = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 2.0], [3.0, 4.0]]])
    b = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[4.0, 3.0], [2.0, 1.0]]])
    assert cosine(a, b).tolist() == pytest.approx([1 / math.sqrt(2), 20 / 30])
    assert cosine(a, torch.zeros_like(a)).tolist() == [0.0, 0.0]
    assert top_k_iou(a[1:], b[1:], fraction=0.5).tolist() == pytest.approx([0.0])
    assert top_k_iou(a[1:], a[1:], fraction=0.5).tolist() == pytest.approx([1.0])


def test_closer_share_on_constructed_maps():
    teacher = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]])
    distilled = torch.tensor([[[1.0, 0.1]], [[1.0, 0.0]], [[1.0, 1.0]]])
    independent = torch.tensor([[[0.0, 1.0]], [[0.0, 1.0]], [[1.0, 1.0]]])
    assert closer_share(teacher, distilled, independent).tolist() == [1.0, 0.0, 0.5]


def test_ojha_statistic_of_a_model_against_itself(trained_tiny_teacher, tiny_world):
    x, y = tiny_world[1].images(slice(0, 8)), tiny_world[1].targets(slice(0, 8))
    from kdscope import Subject, zoo

    other = Subject(zoo.build("resnet", 10, seed=3, width=4, blocks=1), name="other",
                    mean=trained_tiny_teacher.mean.flatten().tolist(), std=trained_tiny_teacher.std.flatten().tolist())
    result = ojha_statistic(trained_tiny_teacher, trained_tiny_teacher, other, x, y, control=other)
    assert result["distilled_closer"][0] >= 0.5
    assert result["control_closer"][0] == pytest.approx(0.5)


def test_agreement_kl_js_by_hand():
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    q = torch.tensor([[0.5, 0.5], [0.1, 0.9]])
    result = agreement(p, q)
    assert result["top1_agreement"][0] == pytest.approx(0.5)
    kl = 0.9 * math.log(9) + 0.1 * math.log(1 / 9)
    assert result["kl"][0] == pytest.approx(kl / 2)
    js = 0.5 * (0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)) * 2
    assert result["js"][0] == pytest.approx(js / 2)


def test_expected_calibration_error_and_per_class_accuracy_by_hand():
    probs = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [0.3, 0.7]])
    labels = torch.tensor([0, 1, 1, 0])
    expected = 0.5 * abs(0.5 - 0.95) + 0.25 * abs(1.0 - 0.55) + 0.25 * abs(0.0 - 0.7)
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(expected)
    estimate, low, high = ece_with_interval(probs, labels, bins=10)
    assert estimate == pytest.approx(expected) and low <= estimate <= high
    assert per_class_accuracy(probs, labels) == {0: 0.5, 1: 0.5}
    assert np.isclose(expected_calibration_error(torch.tensor([[1.0, 0.0]]), torch.tensor([0])), 0.0)
