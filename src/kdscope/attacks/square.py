"""Square attack, Linf (Andriushchenko et al. 2020): score-based random search, no gradients at all.

It needs only the model's logits, so it attacks an int8 model's real kernels directly and tells whether a white-box
attack's failure was robustness or masked gradients.
"""

from __future__ import annotations

import math

import torch

from kdscope.attacks.base import AttackResult, attack, check_attack_inputs, finish
from kdscope.attacks.cw import margin
from kdscope.core.subject import Subject


@attack
def square(subject: Subject, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
           eps: float = 4 / 255, queries: int = 1000, p_init: float = 0.8, seed: int = 0) -> AttackResult:
    """Start from vertical stripes of +-eps, then for up to `queries` model calls per example try a random square
    of +-eps per channel, its side shrinking on the paper's schedule, and keep it when the margin drops. `p_init`, the
    fraction of the image the first squares cover, defaults to 0.8 as in torchattacks and AutoAttack: at 100-1000
    queries it beat 0.05, 0.1 and 0.3 (bench/bench_square.py)."""
    y, target = check_attack_inputs(subject, x, y, target, eps)
    if queries < 1 or not 0 < p_init <= 1:
        raise ValueError(f"square needs queries >= 1 and p_init in (0, 1], got {queries}, {p_init}")
    low, high = subject.input_range
    generator = torch.Generator().manual_seed(seed)
    x = x.detach().to(subject.device)
    n, channels, height, width = x.shape
    y_dev, target_dev = y.to(x.device), target.to(x.device) if target is not None else None
    stripes = _random_signs((n, channels, 1, width), generator).to(x.device)
    best = (x + eps * stripes).clamp(low, high)
    best_margin = _margin(subject, best, y_dev, target_dev)
    used = torch.ones(n, dtype=torch.long)
    rows = torch.arange(height, device=x.device).view(1, 1, -1, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, 1, -1)
    for iteration in range(queries - 1):
        active = (best_margin > 0).nonzero().flatten()
        if len(active) == 0:
            break
        side = _square_side(p_init, iteration, queries, height, width)
        top = torch.randint(0, height - side + 1, (len(active),), generator=generator).to(x.device)
        left = torch.randint(0, width - side + 1, (len(active),), generator=generator).to(x.device)
        window = ((rows >= top.view(-1, 1, 1, 1)) & (rows < (top + side).view(-1, 1, 1, 1)) &
                  (cols >= left.view(-1, 1, 1, 1)) & (cols < (left + side).view(-1, 1, 1, 1)))
        signs = _random_signs((len(active), channels, 1, 1), generator).to(x.device)
        candidate = torch.where(window, (x[active] + eps * signs).clamp(low, high), best[active])
        candidate_margin = _margin(subject, candidate, y_dev[active],
                                   target_dev[active] if target_dev is not None else None)
        used[active.cpu()] += 1
        better = candidate_margin < best_margin[active]
        best[active[better]] = candidate[better]
        best_margin[active[better]] = candidate_margin[better]
    result = finish(subject, x, best, y, target, "square",
                    {"eps": eps, "queries": queries, "p_init": p_init, "seed": seed}, gradient_free=True)
    result.params["queries_used"] = used.tolist()
    return result


@torch.no_grad()
def _margin(subject: Subject, images: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    return margin(subject.logits(images), y, target)


def _random_signs(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1


def _square_side(p_init: float, iteration: int, queries: int, height: int, width: int) -> int:
    """The paper's schedule: the fraction p of pixels changed halves at set points of a 10,000-query budget
    (rescaled to `queries`); the square's side is sqrt(p * pixels), at least 1 and at most the image side - 1."""
    progress = int(iteration / queries * 10_000)
    halvings = sum(progress > point for point in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
    fraction = p_init / 2 ** halvings
    side = round(math.sqrt(fraction * height * width))
    return max(1, min(side, min(height, width) - 1))
