"""Carlini-Wagner L2 (Carlini & Wagner 2017) and the penalised form `max_r -lambda*||r|| + logit_target(x + r)`.

CW is fully batched: every example has its own constant c, binary search and early abort. The margin takes the
best *other* logit by masking the true class with -inf, so it stays right when every logit is negative (zeroing the
true class with a one-hot product, as some implementations do, would make 0 the best other logit).
"""

from __future__ import annotations

import torch

from kdscope.attacks.base import AttackResult, attack, check_attack_inputs, finish
from kdscope.core.subject import Subject


def margin(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Per example: how far the attack is from success (<= 0 means adversarial).
    Untargeted: z_y - max_{i != y} z_i. Targeted: max_{i != t} z_i - z_t."""
    logits = logits.float()
    label = target if target is not None else y
    chosen = logits.gather(1, label.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, label.view(-1, 1), float("-inf")).amax(1)
    return others - chosen if target is not None else chosen - others


@attack
def carlini_wagner(subject: Subject, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
                   kappa: float = 0.0, steps: int = 100, lr: float = 0.01, binary_search_steps: int = 9,
                   initial_const: float = 1e-3, abort_early: bool = True) -> AttackResult:
    """Minimise ||x' - x||_2^2 + c * max(margin(x'), -kappa) over x' = (tanh(w) + 1) / 2 (scaled to the input
    range), with c found per example by binary search; returns the smallest successful x' found (x where none).
    An example whose loss stops falling is dropped from the batch until the next binary-search step."""
    y, target = check_attack_inputs(subject, x, y, target)
    if kappa < 0 or steps < 1 or binary_search_steps < 1 or lr <= 0 or initial_const <= 0:
        raise ValueError("CW needs kappa >= 0, steps >= 1, binary_search_steps >= 1, lr > 0, initial_const > 0")
    low, high = subject.input_range
    x = x.detach().to(subject.device)
    y_dev = y.to(subject.device)
    target_dev = target.to(subject.device) if target is not None else None
    n = len(x)
    const = torch.full((n,), initial_const, device=x.device)
    lower = torch.zeros(n, device=x.device)
    upper = torch.full((n,), 1e10, device=x.device)
    best_l2 = torch.full((n,), float("inf"), device=x.device)
    best = x.clone()
    unit = ((x - low) / (high - low) * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)
    for _ in range(binary_search_steps):
        w = torch.atanh(unit).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=lr)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        done = torch.zeros(n, dtype=torch.bool, device=x.device)
        previous = torch.full((n,), float("inf"), device=x.device)
        check_every = max(steps // 10, 1)
        for iteration in range(steps):
            active = (~done).nonzero().flatten()
            adversarial = low + (high - low) * (torch.tanh(w[active]) + 1) / 2
            l2 = (adversarial - x[active]).flatten(1).pow(2).sum(1)
            gap = margin(subject.logits(adversarial, use_twin=True), y_dev[active],
                         target_dev[active] if target_dev is not None else None)
            loss = l2 + const[active] * torch.clamp(gap + kappa, min=0)
            kept = w.detach().clone()
            optimizer.zero_grad()
            loss.sum().backward()
            optimizer.step()
            with torch.no_grad():
                w[done] = kept[done]
                success = gap + kappa <= 0
                improved = success & (l2 < best_l2[active])
                best_l2[active[improved]] = l2[improved]
                best[active[improved]] = adversarial[improved]
                found[active[success]] = True
                if abort_early and (iteration + 1) % check_every == 0:
                    stalled = loss > previous[active] * 0.9999
                    done[active[stalled]] = True
                    previous[active] = loss
                    if bool(done.all()):
                        break
        with torch.no_grad():
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(upper < 1e9, (lower + upper) / 2, const * 10)
    params = {"kappa": kappa, "steps": steps, "lr": lr, "binary_search_steps": binary_search_steps,
              "initial_const": initial_const, "abort_early": abort_early}
    return finish(subject, x, best, y, target, "cw", params)


@attack
def penalized(subject: Subject, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
              lam: float = 0.1, steps: int = 100, lr: float = 0.01) -> AttackResult:
    """Gradient ascent (Adam) on `-lam * ||r||_2 + logit_target(x + r)`, with x + r kept in the box. Without a
    target the logit term is the best wrong logit minus the true one."""
    y, target = check_attack_inputs(subject, x, y, target)
    if lam < 0 or steps < 1 or lr <= 0:
        raise ValueError("the penalised attack needs lam >= 0, steps >= 1 and lr > 0")
    low, high = subject.input_range
    x = x.detach().to(subject.device)
    y_dev = y.to(subject.device)
    target_dev = target.to(subject.device) if target is not None else None
    r = torch.zeros_like(x, requires_grad=True)
    optimizer = torch.optim.Adam([r], lr=lr)
    for _ in range(steps):
        logits = subject.logits((x + r).clamp(low, high), use_twin=True).float()
        if target_dev is not None:
            score = logits.gather(1, target_dev.view(-1, 1)).squeeze(1)
        else:
            score = -margin(logits, y_dev, None)
        objective = -lam * r.flatten(1).norm(dim=1) + score
        optimizer.zero_grad()
        (-objective.sum()).backward()
        optimizer.step()
        with torch.no_grad():
            r.copy_((x + r).clamp(low, high) - x)
    return finish(subject, x, x + r.detach(), y, target, "penalized", {"lam": lam, "steps": steps, "lr": lr})
