"""Distillation losses on logits (SPEC §2), as plain functions of student logits, teacher logits and labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdscope.data.imageset import UNLABELLED

LOSSES = ("kl", "reverse_kl", "logits", "pseudo_label")



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


def labelled_cross_entropy(student: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over the images that have a label, divided by all the batch's images: each image
    weighs the same in the loss whether or not it has a label. (Averaging over the labelled ones alone gives a
    10% labelled set ten times the weight per image; measured in the README, it cost a pseudo-label student
    14 points and would have passed for dark knowledge.)"""
    labelled = labels != UNLABELLED
    if not labelled.any():
        return student.float().sum() * 0.0
    return F.cross_entropy(student.float()[labelled], labels[labelled], reduction="sum") / len(labels)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, *, kind: str = "kl",
                      temperature: float = 4.0, alpha: float = 0.5) -> torch.Tensor:
    """a * CE(y, z_s) + (1 - a) * teacher term, where the teacher term is `kind`: 'kl' (Hinton), 'reverse_kl',
    'logits', or 'pseudo_label' (cross-entropy on the teacher's argmax: the control that keeps the teacher's
    answers and drops its dark knowledge). The label term covers labelled images (`UNLABELLED` marks the rest),
    the teacher term every image."""
    hard = labelled_cross_entropy(student, labels)
    if kind == "logits":
        soft = logit_l2(student, teacher)
    elif kind == "pseudo_label":
        soft = F.cross_entropy(student.float(), teacher.argmax(1))
    elif kind in ("kl", "reverse_kl"):
        soft = soft_kl(student, teacher, temperature, reverse=kind == "reverse_kl")
    else:
        raise ValueError(f"unknown distillation loss {kind!r}; choose one of {LOSSES}")
    return alpha * hard + (1 - alpha) * soft
