"""The attack contract: raw [0, 1] images in, an AttackResult out; inputs validated, never modified.

White-box attacks take gradients from `Subject.gradient_model` (the fake-quant twin of an int8 model) and success is
always judged on the real model, so an int8 Subject is attacked through its twin and scored on its int8 kernels.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from kdscope.core.subject import Subject


class GradientMaskingWarning(UserWarning):
    """Gradients that cannot be trusted: all zero, or a gradient-free attack doing better than a white-box one."""


@dataclass
class AttackResult:
    """Adversarial batch (raw [0, 1]), per-example success on the judged model, perturbation norms, provenance.

    Success costs one forward pass of the judged model; it is computed when first read, so a caller that only
    needs the images (a transfer matrix evaluates them itself) does not pay for it."""

    adversarial: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor
    attack: str
    gradient_source: str
    judged_on: str
    params: dict = field(default_factory=dict)
    judge: Callable[[], torch.Tensor] | None = field(default=None, repr=False)
    _success: torch.Tensor | None = field(default=None, repr=False)

    @property
    def success(self) -> torch.Tensor:
        if self._success is None:
            self._success = self.judge()
        return self._success

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())


def attack(function: Callable[..., AttackResult]) -> Callable[..., AttackResult]:
    """Run an attack inside the Subject's guard with its parameters frozen: gradients flow to the images only, so
    backward passes skip the weight gradients (a third of their cost), and every flag is restored afterwards."""

    @functools.wraps(function)
    def guarded(subject: Subject, *args: object, **kwargs: object) -> AttackResult:
        with subject.guard():
            for parameter in subject.gradient_model.parameters():
                parameter.requires_grad_(False)
            return function(subject, *args, **kwargs)

    return guarded


def check_attack_inputs(subject: Subject, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                        eps: float | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate images, labels, targets and eps; return labels and targets as long tensors on the CPU."""
    subject.check_images(x)
    if eps is not None and not (eps >= 0 and eps == eps):
        raise ValueError(f"eps must be >= 0, got {eps}; for 8-bit steps write e.g. 4/255")
    y = _labels(y, len(x), "labels")
    target = _labels(target, len(x), "targets") if target is not None else None
    classes = subject.num_classes(x)
    for values, what in ((y, "labels"), (target, "targets")):
        if values is not None and (int(values.min()) < 0 or int(values.max()) >= classes):
            raise ValueError(f"{what} must lie in [0, {classes - 1}] for {subject.name}, got range "
                             f"[{int(values.min())}, {int(values.max())}]")
    if target is not None and bool((target == y).any()):
        raise ValueError("a targeted attack needs target classes different from the true labels")
    return y, target


def _labels(values: torch.Tensor, n: int, what: str) -> torch.Tensor:
    values = torch.as_tensor(values)
    if values.ndim != 1 or len(values) != n:
        raise ValueError(f"{what} must be a 1-D tensor with one class index per image ({n}), got shape "
                         f"{tuple(values.shape)}")
    if values.dtype.is_floating_point:
        raise TypeError(f"{what} must be integer class indices, got {values.dtype}")
    return values.long().cpu()


def loss_gradient(subject: Subject, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Gradient in raw input space of the per-example loss the attack ascends: cross-entropy of the true class, or
    minus cross-entropy of the target class. Summed over the batch, so each example's gradient is its own."""
    x = x.detach().clone().requires_grad_(True)
    logits = subject.logits(x, use_twin=True)
    labels = (target if target is not None else y).to(logits.device)
    loss = F.cross_entropy(logits.float(), labels, reduction="sum")
    if target is not None:
        loss = -loss
    (grad,) = torch.autograd.grad(loss, x)
    if not bool(grad.any()):
        warnings.warn(f"{subject.name}: the input gradient is zero everywhere: gradient masking or a saturated "
                      "model; a white-box attack will not move. Try the gradient-free 'square' attack.",
                      GradientMaskingWarning, stacklevel=3)
    return grad


@torch.no_grad()
def judge(subject: Subject, adversarial: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Success per example on the real model: misclassified (untargeted) or classified as the target."""
    predicted = subject.predict(adversarial)
    return predicted == target if target is not None else predicted != y


def finish(subject: Subject, x: torch.Tensor, adversarial: torch.Tensor, y: torch.Tensor,
           target: torch.Tensor | None, attack: str, params: dict, gradient_free: bool = False) -> AttackResult:
    """Clip to the box, measure norms, judge success on the real model."""
    low, high = subject.input_range
    adversarial = adversarial.detach().clamp(low, high)
    delta = (adversarial - x.detach()).flatten(1)
    return AttackResult(
        adversarial=adversarial, judge=lambda: judge(subject, adversarial, y, target),
        linf=delta.abs().amax(1).cpu(), l2=delta.norm(dim=1).cpu(), attack=attack,
        gradient_source="none (score-based)" if gradient_free else subject.gradient_source,
        judged_on=subject.forward_source,
        params={**params, "targeted": target is not None},
    )
