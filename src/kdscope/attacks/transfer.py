"""Adversarial transfer between every ordered pair of Subjects, and robust accuracy against eps.

For a source s and a target t, with clean images x, labels y and x' crafted on s (SPEC section 5):
- conditional rate: #{s(x)=y, t(x)=y, s(x')!=y, t(x')!=y} / #{s(x)=y, t(x)=y, s(x')!=y}
- unconditional rate: #{s(x')!=y, t(x')!=y} / #{s(x')!=y}
- fooling rate (Ojha et al. 2023): #{s(x')!=s(x), t(x')!=t(x)} / #{s(x')!=s(x)}
Each comes with a 95% bootstrap interval over images, and the per-example masks are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from kdscope.attacks.registry import run
from kdscope.core.stats import bootstrap_ci
from kdscope.core.subject import Subject


@dataclass
class TransferCell:
    """One ordered pair: the three rates as (estimate, low, high) and their numerator/denominator masks."""

    source: str
    target: str
    conditional: tuple[float, float, float]
    unconditional: tuple[float, float, float]
    fooling: tuple[float, float, float]
    masks: dict[str, list[bool]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"source": self.source, "target": self.target, "conditional": list(self.conditional),
                "unconditional": list(self.unconditional), "fooling": list(self.fooling), "masks": self.masks}


@dataclass
class TransferResult:
    models: list[str]
    attack: str
    params: dict
    cells: list[TransferCell]
    white_box_success: dict[str, float]
    rounded_to_8bit: bool

    def cell(self, source: str, target: str) -> TransferCell:
        return next(c for c in self.cells if c.source == source and c.target == target)

    def to_dict(self) -> dict:
        return {"models": self.models, "attack": self.attack, "params": self.params,
                "rounded_to_8bit": self.rounded_to_8bit, "white_box_success": self.white_box_success,
                "cells": [c.to_dict() for c in self.cells]}


def transfer_rates(y: np.ndarray, source_clean: np.ndarray, source_adv: np.ndarray, target_clean: np.ndarray,
                   target_adv: np.ndarray, *, seed: int = 0) -> dict[str, tuple[tuple[float, float, float], dict]]:
    """The three rates from predictions (one entry per image), each with its interval and its masks."""
    definitions = {
        "conditional": ((source_clean == y) & (target_clean == y) & (source_adv != y),
                        target_adv != y),
        "unconditional": (source_adv != y, target_adv != y),
        "fooling": (source_adv != source_clean, target_adv != target_clean),
    }
    rates = {}
    for name, (eligible, fooled) in definitions.items():
        numerator, denominator = (eligible & fooled), eligible
        rates[name] = (_ratio_ci(numerator, denominator, seed),
                       {"numerator": numerator.tolist(), "denominator": denominator.tolist()})
    return rates


def _ratio_ci(numerator: np.ndarray, denominator: np.ndarray, seed: int) -> tuple[float, float, float]:
    """Ratio of counts with a percentile bootstrap over images; NaN when no image is eligible."""
    if not denominator.any():
        return (float("nan"), float("nan"), float("nan"))
    pairs = np.stack([numerator, denominator], axis=1).astype(float)
    return bootstrap_ci(pairs, lambda sample: sample[:, 0].sum() / max(sample[:, 1].sum(), 1.0), seed=seed)


def transfer_matrix(subjects: Sequence[Subject], x: torch.Tensor, y: torch.Tensor, *, attack: str = "pgd",
                    round_to_8bit: bool = False, ci_seed: int = 0, **params: object) -> TransferResult:
    """Craft on each Subject, evaluate on every Subject (the diagonal is white-box), keep per-example masks.
    With `round_to_8bit`, adversarial images are rounded to k/255 before evaluation, as a saved PNG would be.
    `params` go to the attack; `ci_seed` seeds the bootstrap intervals."""
    names = [s.name for s in subjects]
    if len(set(names)) != len(names):
        raise ValueError(f"Subjects need distinct names for a transfer matrix, got {names}")
    y_np = np.asarray(y)
    clean = {s.name: s.predict(x).numpy() for s in subjects}
    cells, white_box = [], {}
    for source in subjects:
        adversarial = run(source, x, y, attack=attack, **params).adversarial.cpu()
        if round_to_8bit:
            adversarial = torch.round(adversarial * 255) / 255
        source_adv = source.predict(adversarial).numpy()
        white_box[source.name] = float((source_adv != y_np).mean())
        for target in subjects:
            target_adv = source_adv if target is source else target.predict(adversarial).numpy()
            rates = transfer_rates(y_np, clean[source.name], source_adv, clean[target.name], target_adv,
                                   seed=ci_seed)
            cells.append(TransferCell(source.name, target.name, *(rates[k][0] for k in
                                                                  ("conditional", "unconditional", "fooling")),
                                      masks={k: v[1] for k, v in rates.items()}))
    return TransferResult(names, attack, dict(params), cells, white_box, round_to_8bit)


def robust_accuracy_curve(subject: Subject, x: torch.Tensor, y: torch.Tensor, eps_values: Sequence[float], *,
                          attack: str = "pgd", ci_seed: int = 0, **params: object) -> list[dict]:
    """Accuracy on adversarial images crafted on `subject` itself, per eps, with 95% bootstrap intervals."""
    curve = []
    for eps in eps_values:
        result = run(subject, x, y, attack=attack, eps=eps, **params)
        correct = (subject.predict(result.adversarial) == torch.as_tensor(y)).numpy().astype(float)
        accuracy, low, high = bootstrap_ci(correct, seed=ci_seed)
        curve.append({"eps": eps, "accuracy": accuracy, "ci95": [low, high]})
    return curve
