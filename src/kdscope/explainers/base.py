"""The explainer contract: a Subject, raw [0, 1] images and one target class per image -> raw signed maps.

Maps are returned unnormalised, batched, on the model's device; display scaling is a separate explicit step. The
model is never changed: every explainer runs inside the Subject's guard (modes, hooks, requires_grad restored) with
its parameters frozen, so only the images receive gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kdscope.core.subject import Subject


@dataclass
class Explanation:
    """Raw signed maps, (N, C, H, W) for pixel methods or (N, 1, H, W) for region methods, and their provenance:
    the method, its parameters, and which model produced them ('model', 'twin' or 'int8 model')."""

    maps: torch.Tensor
    method: str
    produced_by: str
    params: dict = field(default_factory=dict)

    @property
    def maps_2d(self) -> torch.Tensor:
        """(N, H, W): channels summed, the form similarity and localisation metrics compare."""
        return self.maps.sum(1)


def check_explain_inputs(subject: Subject, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Validate images and targets; return targets as a long tensor on the model's device."""
    subject.check_images(x)
    target = torch.as_tensor(target)
    if target.ndim != 1 or len(target) != len(x):
        raise ValueError(f"target must hold one class index per image ({len(x)}), got shape {tuple(target.shape)}")
    if target.dtype.is_floating_point:
        raise TypeError(f"target must be integer class indices, got {target.dtype}")
    classes = subject.num_classes(x)
    if int(target.min()) < 0 or int(target.max()) >= classes:
        raise ValueError(f"target classes must lie in [0, {classes - 1}] for {subject.name}, got range "
                         f"[{int(target.min())}, {int(target.max())}]")
    return target.long().to(subject.device)


def target_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, target.view(-1, 1)).squeeze(1)


def input_gradient(subject: Subject, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d logit_target / d x in raw input space, per example (the sum over the batch separates them)."""
    x = x.detach().to(subject.device).requires_grad_(True)
    score = target_logits(subject.logits(x, use_twin=True), target).sum()
    (grad,) = torch.autograd.grad(score, x)
    return grad


def frozen(subject: Subject) -> None:
    """Inside a guard: stop parameter gradients (the guard restores the flags)."""
    for parameter in subject.gradient_model.parameters():
        parameter.requires_grad_(False)
