"""Unstructured magnitude pruning (layer-wise or global) with fine-tuning or recovery by distillation, and iterative
magnitude pruning with rewinding (the lottery ticket procedure) with its random-reinitialisation control.

Mask selection follows `torch.nn.utils.prune.l1_unstructured` / `global_unstructured` exactly (the `round(amount * n)`
smallest magnitudes by `torch.topk`), so masks are comparable with PyTorch's at the same sparsity.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from kdscope.compress.distill import DistillConfig
from kdscope.compress.masks import apply_masks, masks_of, prunable_layers, weight_of
from kdscope.compress.outcome import PruneResult, check_fine_tuning, fine_tune_pruned, finish_pruned, training_record
from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet
from kdscope.train import TrainConfig, train

SCOPES = ("global", "layer")


@dataclass(frozen=True)
class PruneConfig:
    """Target `sparsity` in [0, 1) over the chosen Conv2d/Linear `layers` (all by default), ranked globally or per
    layer."""

    sparsity: float = 0.8
    scope: str = "global"
    layers: tuple[str, ...] | None = None

    def validate(self) -> None:
        if not (isinstance(self.sparsity, (int, float)) and 0.0 <= self.sparsity < 1.0):
            raise ValueError(f"sparsity must lie in [0, 1), got {self.sparsity}; 0.8 removes 80% of the weights")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")


@torch.no_grad()
def magnitude_masks(model: nn.Module, amount: float, *, scope: str = "global", layers: list[str] | None = None,
                    previous: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Masks that remove the `amount` fraction of the still-unpruned weights with the smallest magnitude.

    Without `previous` masks this is the target sparsity itself; with them (iterative pruning) already pruned weights
    stay pruned and `amount` applies to the survivors, as in `torch.nn.utils.prune`'s pruning containers.
    """
    PruneConfig(sparsity=amount, scope=scope).validate()
    chosen = prunable_layers(model, layers)
    previous = previous or {}
    scores = {}
    for name, module in chosen.items():
        score = weight_of(module).detach().abs().float().flatten().clone()
        if name in previous:
            score[~previous[name].flatten().bool()] = -math.inf
        scores[name] = score
    groups = [list(scores)] if scope == "global" else [[name] for name in scores]
    masks = {}
    for group in groups:
        flat = torch.cat([scores[name] for name in group])
        already = int(torch.isinf(flat).sum())
        to_prune = already + round(amount * (flat.numel() - already))
        keep = torch.ones_like(flat, dtype=torch.bool)
        if to_prune:
            keep[torch.topk(flat, k=to_prune, largest=False).indices] = False
        for name, piece in zip(group, torch.split(keep, [scores[n].numel() for n in group])):
            masks[name] = piece.view_as(weight_of(chosen[name]))
    return masks


def prune(
    subject: Subject,
    config: PruneConfig = PruneConfig(),
    *,
    data: ImageSet | None = None,
    fine_tune: TrainConfig | None = None,
    recover: DistillConfig | None = None,
    eval_data: ImageSet | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    progress: bool = True,
) -> PruneResult:
    """Prune a copy of `subject`'s model by magnitude; optionally fine-tune it with the masks held, by cross-entropy
    or (with `recover`) by distillation from the unpruned parent. The parent is never modified."""
    config.validate()
    check_fine_tuning(data, fine_tune, recover)
    name = name or f"{subject.name}_pruned{round(config.sparsity * 100)}"
    model = copy.deepcopy(subject.model)
    layers = list(config.layers) if config.layers is not None else None
    apply_masks(model, magnitude_masks(model, config.sparsity, scope=config.scope, layers=layers,
                                       previous=masks_of(model)))
    fine_tune = fine_tune_pruned(model, subject, data, fine_tune, recover, eval_data, name, progress)
    hyperparameters = {"prune": {**asdict(config), "layers": layers}, **training_record(fine_tune, recover)}
    return finish_pruned(model, subject, name, "prune:magnitude", hyperparameters, data, eval_data, out,
                         fine_tune.seed if fine_tune is not None else 0)


@dataclass
class TicketRound:
    """One round of iterative pruning: the rewound-and-retrained ticket and, optionally, its random-reinit control."""

    sparsity: float
    ticket: PruneResult
    control: PruneResult | None = None


@dataclass
class LotteryResult:
    dense: Subject
    dense_accuracy: float | None
    rounds: list[TicketRound] = field(default_factory=list)


def lottery_ticket(
    model: nn.Module,
    data: ImageSet,
    config: TrainConfig = TrainConfig(),
    *,
    rounds: int = 3,
    rate: float = 0.5,
    rewind_epoch: int = 1,
    scope: str = "global",
    control: bool = True,
    control_seed: int = 1_000,
    eval_data: ImageSet | None = None,
    name: str = "ticket",
    progress: bool = True,
) -> LotteryResult:
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

    Train a copy of `model` for `config.epochs`, keeping its weights after `rewind_epoch` epochs (0 = initialisation).
    Each round removes `rate` of the surviving weights by magnitude of the last trained weights, rewinds the survivors
    to the kept weights and retrains with the same schedule. The control trains the same mask from fresh random
    weights (seeded by `control_seed`), the comparison that tells a winning ticket from a good mask.
    """
    PruneConfig(sparsity=rate, scope=scope).validate()
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if not 0 <= rewind_epoch < config.epochs:
        raise ValueError(f"rewind_epoch must lie in [0, epochs={config.epochs}), got {rewind_epoch}")
    mean, std = data.channel_stats()
    initial = copy.deepcopy(model)
    rewind_state = {}

    def keep_rewind_point(epoch: int, trained: nn.Module) -> None:
        if epoch == rewind_epoch:
            rewind_state.update({k: v.detach().clone() for k, v in trained.state_dict().items()})

    dense = copy.deepcopy(initial)
    keep_rewind_point(0, dense)
    train(dense, data, config, eval_data=eval_data, mean=mean, std=std, progress=progress, name=f"{name}_dense",
          on_epoch_end=keep_rewind_point)
    dense_subject = Subject(dense, name=f"{name}_dense", role="other", mean=mean, std=std,
                            class_names=data.class_names)
    result = LotteryResult(dense_subject, dense_subject.evaluate(eval_data)["accuracy"] if eval_data else None)
    masks, trained = None, dense
    for index in range(1, rounds + 1):
        masks = magnitude_masks(trained, rate, scope=scope, previous=masks)
        sparsity = 1 - sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
        ticket = copy.deepcopy(initial)
        ticket.load_state_dict(rewind_state)
        round_name = f"{name}_round{index}"
        ticket_result = _train_masked(ticket, masks, data, config, eval_data, mean, std, round_name, progress, {
            "lottery": {"round": index, "rate": rate, "rewind_epoch": rewind_epoch, "scope": scope},
            "train": asdict(config)}, dense_subject, "prune:lottery_ticket")
        round_record = TicketRound(sparsity, ticket_result)
        if control:
            fresh = _reinitialised(initial, control_seed + index)
            round_record.control = _train_masked(fresh, masks, data, config, eval_data, mean, std,
                                                 f"{round_name}_reinit", progress, {
                                                     "lottery": {"round": index, "control": "random_reinit",
                                                                 "control_seed": control_seed + index},
                                                     "train": asdict(config)}, dense_subject,
                                                 "prune:random_reinit_control")
            round_record.control.lineage.control_of = round_name
        result.rounds.append(round_record)
        trained = ticket_result.subject.model
    return result


def _train_masked(model: nn.Module, masks: dict[str, torch.Tensor], data: ImageSet, config: TrainConfig,
                  eval_data: ImageSet | None, mean: tuple, std: tuple, name: str, progress: bool,
                  hyperparameters: dict, parent: Subject, method: str) -> PruneResult:
    apply_masks(model, masks)
    train(model, data, config, eval_data=eval_data, mean=mean, std=std, progress=progress, name=name, role="pruned")
    return finish_pruned(model, parent, name, method, hyperparameters, data, eval_data, None, config.seed)


def _reinitialised(model: nn.Module, seed: int) -> nn.Module:
    """A copy with every layer's parameters drawn afresh by its own `reset_parameters`, seeded."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return fresh
