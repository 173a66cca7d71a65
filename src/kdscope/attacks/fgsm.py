"""FGSM (Goodfellow et al. 2015) and iterative FGSM / PGD (Kurakin et al. 2017; Madry et al. 2018) in Linf and L2.

Steps follow torchattacks' order of operations (step, project onto the eps-ball, clip to the box), so that without a
random start the two give the same images.
"""

from __future__ import annotations

import torch

from kdscope.attacks.base import AttackResult, attack, check_attack_inputs, finish, loss_gradient
from kdscope.core.subject import Subject


@attack
def fgsm(subject: Subject, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
         eps: float = 4 / 255) -> AttackResult:
    """One signed-gradient step of size eps: up the true class's loss, or down the target's."""
    y, target = check_attack_inputs(subject, x, y, target, eps)
    low, high = subject.input_range
    x = x.detach().to(subject.device)
    grad = loss_gradient(subject, x, y, target)
    adversarial = (x + eps * grad.sign()).clamp(low, high)
    return finish(subject, x, adversarial, y, target, "fgsm", {"eps": eps})


@attack
def pgd(subject: Subject, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
        eps: float = 4 / 255, step: float | None = None, steps: int = 10, norm: str = "linf",
        random_start: bool = True, seed: int = 0) -> AttackResult:
    """Projected gradient ascent in the Linf or L2 eps-ball (`step` defaults to 2.5 * eps / steps); with
    `random_start=False` this is the basic iterative method."""
    y, target = check_attack_inputs(subject, x, y, target, eps)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    step = 2.5 * eps / steps if step is None else step
    if step <= 0 and eps > 0:
        raise ValueError(f"step must be > 0, got {step}")
    low, high = subject.input_range
    x = x.detach().to(subject.device)
    adversarial = x.clone()
    if random_start:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        adversarial = (adversarial + _random_start(x.shape, eps, norm, generator).to(x.device)).clamp(low, high)
    for _ in range(steps):
        grad = loss_gradient(subject, adversarial, y, target)
        if norm == "linf":
            adversarial = adversarial + step * grad.sign()
            delta = (adversarial - x).clamp(-eps, eps)
        else:
            grad_norm = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-10
            adversarial = adversarial + step * (grad / grad_norm)
            delta = _project_l2(adversarial - x, eps)
        adversarial = (x + delta).clamp(low, high).detach()
    params = {"eps": eps, "step": step, "steps": steps, "norm": norm, "random_start": random_start, "seed": seed}
    return finish(subject, x, adversarial, y, target, "pgd", params)

NORMS = ("linf", "l2")
"""The perturbation budgets PGD projects onto."""


def _project_l2(delta: torch.Tensor, eps: float) -> torch.Tensor:
    norms = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    return delta * torch.clamp(eps / (norms + 1e-12), max=1.0)


def _random_start(shape: torch.Size, eps: float, norm: str, generator: torch.Generator) -> torch.Tensor:
    """Uniform in the Linf ball, or uniform in the L2 ball (direction on the sphere, radius eps * u^(1/d))."""
    if norm == "linf":
        return (torch.rand(shape, generator=generator) * 2 - 1) * eps
    direction = torch.randn(shape, generator=generator)
    direction = direction / direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    dimensions = direction[0].numel()
    radius = eps * torch.rand(shape[0], generator=generator) ** (1 / dimensions)
    return direction * radius.view(-1, 1, 1, 1)
