"""Attacks in raw [0, 1] input space and adversarial transfer between Subjects."""

from kdscope.attacks.base import AttackResult, GradientMaskingWarning
from kdscope.attacks.cw import carlini_wagner, margin, penalized
from kdscope.attacks.fgsm import fgsm, pgd
from kdscope.attacks.registry import ATTACKS, check_gradient_masking, run
from kdscope.attacks.square import square
from kdscope.attacks.transfer import TransferResult, robust_accuracy_curve, transfer_matrix, transfer_rates

__all__ = ["ATTACKS", "AttackResult", "GradientMaskingWarning", "TransferResult", "carlini_wagner",
           "check_gradient_masking", "fgsm", "margin", "penalized", "pgd", "robust_accuracy_curve", "run", "square",
           "transfer_matrix", "transfer_rates"]
