"""Probes on ProbeWorld variants with models whose answers are known by construction."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from kdscope import Subject
from kdscope.compare.probes import compare_outcomes, consensus, invariance, shape_decisions, shortcut_reliance
from kdscope.data import probeworld


class _Oracle(nn.Module):
    """Answers from a lookup: image index encoded in the first pixel, answers fixed in advance."""

    def __init__(self, answers: np.ndarray, images: torch.Tensor) -> None:
        super().__init__()
        self.answers = torch.as_tensor(answers)
        self.keys = images.flatten(1)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = torch.cdist(x.flatten(1), self.keys).argmin(1)
        return nn.functional.one_hot(self.answers[index], 10).float() * 5 + self.dummy


def _oracle(data, answers) -> Subject:
    return Subject(_Oracle(answers, data.images()), name="oracle")


def test_shape_decisions_and_shortcut_reliance_count_the_right_images():
    conflict = probeworld(40, split="test", variant="cue_conflict", size=16)
    textures = conflict.extras["texture_labels"]
    answers = np.where(np.arange(40) < 30, conflict.labels, textures)
    answers[:5] = (conflict.labels[:5] + 1) % 10
    answers[:5] = np.where(answers[:5] == textures[:5], (answers[:5] + 1) % 10, answers[:5])
    decisions = shape_decisions(_oracle(conflict, answers), conflict)
    assert len(decisions) == 35 and decisions.mean() == pytest.approx(25 / 35)
    shortcut = probeworld(40, split="test", variant="shortcut", size=16, shortcut_rate=0.5)
    coded = shortcut.extras["shortcut_labels"]
    reliance = shortcut_reliance(_oracle(shortcut, coded), shortcut)
    assert len(reliance) == int((coded != shortcut.labels).sum()) and reliance.mean() == 1.0
    with pytest.raises(ValueError, match="texture_labels"):
        shape_decisions(_oracle(shortcut, coded), dataclasses.replace(shortcut, extras={}))
    with pytest.raises(ValueError, match="shortcut_rate < 1"):
        shortcut_reliance(_oracle(shortcut, coded), probeworld(20, split="test", variant="shortcut", size=16))


def test_invariance_consensus_and_paired_comparison():
    clean = probeworld(30, split="test", size=16)
    shifted = probeworld(30, split="test", variant="colour_shift", size=16)
    steady = Subject(_Oracle(np.concatenate([clean.labels, clean.labels]),
                             torch.cat([clean.images(), shifted.images()])), name="steady")
    assert invariance(steady, clean, shifted).mean() == 1.0
    assert consensus(steady, _oracle(clean, clean.labels), clean).mean() == 1.0
    result = compare_outcomes(np.ones(30), np.r_[np.ones(15), np.zeros(15)])
    assert result["difference"][0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same scenes"):
        invariance(steady, clean, probeworld(31, split="test", size=16))
