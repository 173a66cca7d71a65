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

RATES = ("conditional", "unconditional", "fooling")


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


def fooling_gap(y: np.ndarray, source_clean: np.ndarray, source_adv: np.ndarray,
                student: tuple[np.ndarray, np.ndarray], control: tuple[np.ndarray, np.ndarray], *,
                seed: int = 0) -> tuple[tuple[float, float, float], int]:
    """Paired (student, control) difference in the share fooled by images that fool the source, over the images
    that fool the source and that both models get right when clean; `student` and `control` are (clean, adversarial)
    predictions. Returns the interval and the number of such images (NaN interval when there are none)."""
    eligible = (source_clean == y) & (source_adv != y) & (student[0] == y) & (control[0] == y)
    if not eligible.any():
        return (float("nan"),) * 3, 0
    difference = (student[1] != y).astype(float) - (control[1] != y).astype(float)
    return bootstrap_ci(difference[eligible], seed=seed), int(eligible.sum())


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
    adversarial_predictions = {}
    for source in subjects:
        adversarial = run(source, x, y, attack=attack, **params).adversarial.cpu()
        if round_to_8bit:
            adversarial = torch.round(adversarial * 255) / 255
        adversarial_predictions[source.name] = {target.name: target.predict(adversarial).numpy()
                                                for target in subjects}
    return transfer_from_predictions(names, y_np, clean, adversarial_predictions, attack=attack, params=dict(params),
                                     round_to_8bit=round_to_8bit, ci_seed=ci_seed)


def transfer_from_predictions(names: Sequence[str], y: np.ndarray, clean: dict[str, np.ndarray],
                              adversarial: dict[str, dict[str, np.ndarray]], *, attack: str, params: dict,
                              round_to_8bit: bool, ci_seed: int = 0) -> TransferResult:
    """The matrix from per-image predictions: `clean[model]` on the clean images, `adversarial[source][target]`
    on the images crafted on `source` (gathered batch by batch, or across processes, in image order)."""
    cells, white_box = [], {}
    for source in names:
        source_adv = adversarial[source][source]
        white_box[source] = float((source_adv != y).mean())
        for target in names:
            rates = transfer_rates(y, clean[source], source_adv, clean[target], adversarial[source][target],
                                   seed=ci_seed)
            cells.append(TransferCell(source, target, *(rates[k][0] for k in RATES),
                                      masks={k: v[1] for k, v in rates.items()}))
    return TransferResult(list(names), attack, params, cells, white_box, round_to_8bit)


def robust_accuracy_curve(subject: Subject, x: torch.Tensor, y: torch.Tensor, eps_values: Sequence[float], *,
                          attack: str = "pgd", ci_seed: int = 0, **params: object) -> list[dict]:
    """Accuracy on adversarial images crafted on `subject` itself, per eps, with 95% bootstrap intervals."""
    return curve_from_outcomes(eps_values, [robust_outcomes(subject, x, y, eps, attack=attack, **params)
                                            for eps in eps_values], ci_seed=ci_seed)


def robust_outcomes(subject: Subject, x: torch.Tensor, y: torch.Tensor, eps: float, *, attack: str = "pgd",
                    **params: object) -> np.ndarray:
    """Per image: 1 when the model is still right on the image attacked at `eps` on itself."""
    result = run(subject, x, y, attack=attack, eps=eps, **params)
    return (subject.predict(result.adversarial) == torch.as_tensor(y)).numpy().astype(float)


def curve_from_outcomes(eps_values: Sequence[float], outcomes: Sequence[np.ndarray], *, ci_seed: int = 0) -> list[dict]:
    """The robust accuracy curve from each eps's per-image outcomes."""
    curve = []
    for eps, correct in zip(eps_values, outcomes, strict=True):
        accuracy, low, high = bootstrap_ci(correct, seed=ci_seed)
        curve.append({"eps": eps, "accuracy": accuracy, "ci95": [low, high]})
    return curve
