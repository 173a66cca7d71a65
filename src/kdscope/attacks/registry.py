"""One call for every attack: `run(subject, x, y, attack="pgd", target=None, **params) -> AttackResult`."""

from __future__ import annotations

import warnings

import torch

from kdscope.attacks.base import AttackResult, GradientMaskingWarning
from kdscope.attacks.cw import carlini_wagner, penalized
from kdscope.attacks.fgsm import NORMS, fgsm, pgd
from kdscope.attacks.square import square
from kdscope.core.registry import Entry, lookup
from kdscope.core.subject import Subject

_WHITE_BOX = frozenset({"needs_gradients"})

ATTACKS: dict[str, Entry[AttackResult]] = {entry.name: entry for entry in (
    Entry("fgsm", fgsm, "one signed-gradient step of size eps (Goodfellow et al. 2015)", _WHITE_BOX),
    Entry("pgd", pgd, "projected gradient descent in an Linf or L2 ball (Madry et al. 2018)", _WHITE_BOX,
          choices={"norm": NORMS}),
    Entry("cw", carlini_wagner, "Carlini-Wagner L2 with a binary search on its constant", _WHITE_BOX),
    Entry("penalized", penalized, "gradient ascent on the margin with an L2 penalty", _WHITE_BOX),
    Entry("square", square, "score-based random squares, no gradients (Andriushchenko et al. 2020)",
          frozenset({"runs_int8_kernels"})),
)}


def run(subject: Subject, x: torch.Tensor, y: torch.Tensor, *, attack: str = "pgd",
        target: torch.Tensor | None = None, **params: object) -> AttackResult:
    """Run a registered attack; the input batch is never modified and the model's state is restored."""
    return lookup(ATTACKS, attack, "attack")(subject, x, y, target=target, **params)


def check_gradient_masking(white_box: AttackResult, gradient_free: AttackResult, *, margin: float = 0.05) -> bool:
    """Warn (and return True) when the gradient-free attack succeeds clearly more often than the white-box one on
    the same images: the white-box attack's gradients are then not to be trusted (Athalye et al. 2018)."""
    masked = gradient_free.success_rate > white_box.success_rate + margin
    if masked:
        warnings.warn(f"{gradient_free.attack} (no gradients) succeeded on {gradient_free.success_rate:.0%} of the "
                      f"images but {white_box.attack} (gradients from the {white_box.gradient_source}) only on "
                      f"{white_box.success_rate:.0%}: its gradients look masked; report the stronger attack.",
                      GradientMaskingWarning, stacklevel=2)
    return masked
