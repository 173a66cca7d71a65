"""Distillation losses on logits (SPEC §2), as plain functions of student logits, teacher logits and labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("kl", "reverse_kl", "logits")


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float, *, reverse: bool = False) -> torch.Tensor:
    """T^2 * KL(p_t || q_s) at temperature T (or KL(q_s || p_t) with `reverse`), averaged over the batch.

    The T^2 factor keeps the soft term's gradient on the same scale as cross-entropy's: d/dz_s = T (q_s - p_t) / N.
    """
    log_q = F.log_softmax(student.float() / temperature, dim=1)
    log_p = F.log_softmax(teacher.float() / temperature, dim=1)
    if reverse:
        divergence = (log_q.exp() * (log_q - log_p)).sum(1)
    else:
        divergence = (log_p.exp() * (log_p - log_q)).sum(1)
    return temperature**2 * divergence.mean()


def logit_l2(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """||z_t - z_s||^2 summed over classes, averaged over the batch."""
    return (teacher.float() - student.float()).pow(2).sum(1).mean()


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, *, kind: str = "kl",
                      temperature: float = 4.0, alpha: float = 0.5) -> torch.Tensor:
    """a * CE(y, z_s) + (1 - a) * soft term, where the soft term is `kind`: 'kl' (Hinton), 'reverse_kl', 'logits'."""
    hard = F.cross_entropy(student.float(), labels)
    if kind == "logits":
        soft = logit_l2(student, teacher)
    elif kind in ("kl", "reverse_kl"):
        soft = soft_kl(student, teacher, temperature, reverse=kind == "reverse_kl")
    else:
        raise ValueError(f"unknown distillation loss {kind!r}; choose one of {LOSSES}")
    return alpha * hard + (1 - alpha) * soft
