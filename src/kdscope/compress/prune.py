"""Unstructured magnitude pruning (layer-wise or global) with fine-tuning or recovery by distillation, and iterative
magnitude pruning with rewinding (the lottery ticket procedure) with its random-reinitialisation control.

Mask selection follows `torch.nn.utils.prune.l1_unstructured` / `global_unstructured` exactly (the `round(amount * n)`
smallest magnitudes by `torch.topk`), so masks are comparable with PyTorch's at the same sparsity.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from kdscope.compress.compressed import Compressed, check_data
from kdscope.compress.distill import DistillConfig
from kdscope.compress.logits import logits_only
from kdscope.compress.masks import apply_masks, masks_of, prunable_layers, weight_of
from kdscope.compress.outcome import check_fine_tuning, fine_tune_pruned, finish_pruned, normalisation, training_record
from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet
from kdscope.train import TrainConfig
from kdscope.train import train as run_training

SCOPES = ("global", "layer")


@dataclass(frozen=True)
class PruneConfig:
    """Target `sparsity` in [0, 1) over the chosen Conv2d/Linear `layers` (all by default), ranked globally or per
    layer."""

    sparsity: float = 0.8
    scope: str = field(default="global", metadata={"choices": SCOPES})
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
    parent: Subject,
    data: ImageSet | None = None,
    config: PruneConfig = PruneConfig(),
    *,
    train: TrainConfig | None = None,
    recover: DistillConfig | None = None,
    eval_data: ImageSet | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    progress: bool = True,
) -> Compressed:
    """Prune a copy of `parent`'s model by magnitude; with `train` (and `data`), fine-tune it with the masks held, by
    cross-entropy or (with `recover`) by distillation from the unpruned parent. The parent is never modified."""
    check_data(data, "prune", required=False)
    config.validate()
    check_fine_tuning(data, train, recover)
    name = name or f"{parent.name}_pruned{round(config.sparsity * 100)}"
    model = copy.deepcopy(parent.model)
    layers = list(config.layers) if config.layers is not None else None
    apply_masks(model, magnitude_masks(model, config.sparsity, scope=config.scope, layers=layers,
                                       previous=masks_of(model)))
    train = fine_tune_pruned(model, parent, data, train, recover, eval_data, name, progress)
    hyperparameters = {"prune": {**asdict(config), "layers": layers}, **training_record(train, recover)}
    return finish_pruned(model, parent, name, "prune:magnitude", hyperparameters, data, eval_data, out,
                         train.seed if train is not None else 0)


@dataclass(frozen=True)
class LotteryConfig:
    """`rounds` of pruning, each removing `rate` of the surviving weights by magnitude (ranked globally or per layer
    by `scope`) and rewinding the survivors to their weights after `rewind_epoch` epochs (0 = initialisation). The
    random re-initialisation control of round k draws its weights with seed `control_seed + k`."""

    rounds: int = 3
    rate: float = 0.5
    rewind_epoch: int = 1
    scope: str = field(default="global", metadata={"choices": SCOPES})
    control_seed: int = 1_000

    def validate(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not (isinstance(self.rate, (int, float)) and 0.0 < self.rate < 1.0):
            raise ValueError(f"rate must lie in (0, 1), got {self.rate}; 0.5 removes half the survivors each round")
        if self.rewind_epoch < 0:
            raise ValueError(f"rewind_epoch must be >= 0, got {self.rewind_epoch}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")


def lottery_ticket(
    parent: Subject,
    data: ImageSet,
    config: LotteryConfig = LotteryConfig(),
    *,
    train: TrainConfig = TrainConfig(),
    control: bool = True,
    eval_data: ImageSet | None = None,
    out: str | Path | None = None,
    name: str = "ticket",
    progress: bool = True,
) -> Compressed:
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020) from `parent`'s
    weights as the initialisation (the parent is never modified).

    Trains a copy for `train.epochs` (the dense network NAME_dense, every ticket's lineage parent), keeping its
    weights after `rewind_epoch` epochs. Each round removes `rate` of the surviving weights by magnitude of the last
    trained weights, rewinds the survivors to the kept weights and retrains with the same schedule. The control
    (`control=True`) trains the same mask from fresh random weights, the comparison that tells a winning ticket from
    a good mask. Returns the last round's ticket, every round in `.rounds`; with `out`, saves every ticket and
    control as OUT/NAME_roundK.pt and OUT/NAME_roundK_reinit.pt.
    """
    check_data(data, "lottery_ticket", required=True)
    config.validate()
    train.validate()
    if not config.rewind_epoch < train.epochs:
        raise ValueError(f"rewind_epoch must lie in [0, epochs={train.epochs}), got {config.rewind_epoch}")
    mean, std = normalisation(parent)
    initial = copy.deepcopy(parent.model)
    rewind_state = {}

    def keep_rewind_point(epoch: int, trained: nn.Module) -> None:
        if epoch == config.rewind_epoch:
            rewind_state.update({k: v.detach().clone() for k, v in trained.state_dict().items()})

    dense = copy.deepcopy(initial)
    keep_rewind_point(0, dense)
    run_training(logits_only(dense, parent), data, train, eval_data=eval_data, mean=mean, std=std,
                 progress=progress, name=f"{name}_dense", on_epoch_end=lambda epoch, _: keep_rewind_point(epoch, dense))
    dense_subject = Subject(dense, name=f"{name}_dense", role="other", mean=mean, std=std,
                            class_names=data.class_names, output=parent.output)
    dense_metrics = {"parent_accuracy": dense_subject.evaluate(eval_data)["accuracy"]} if eval_data else {}
    masked = functools.partial(_train_masked, data=data, train=train, eval_data=eval_data, parent=dense_subject,
                               extra_metrics=dense_metrics, out=out, progress=progress)
    masks, trained, rounds = None, dense, []
    for index in range(1, config.rounds + 1):
        masks = magnitude_masks(trained, config.rate, scope=config.scope, previous=masks)
        ticket = copy.deepcopy(initial)
        ticket.load_state_dict(rewind_state)
        round_name = f"{name}_round{index}"
        settings = {"round": index, "rate": config.rate, "rewind_epoch": config.rewind_epoch, "scope": config.scope}
        record = {"train": asdict(train), "initialisation": parent.name}
        result = masked(ticket, masks, round_name, "prune:lottery_ticket", {"lottery": settings, **record})
        if control:
            seed = config.control_seed + index
            reinit = masked(_reinitialised(initial, seed), masks, f"{round_name}_reinit",
                            "prune:random_reinit_control",
                            {"lottery": {**settings, "control": "random_reinit", "control_seed": seed}, **record},
                            control_of=round_name)
            result = replace(result, control=reinit)
        rounds.append(result)
        trained = result.subject.model
    return replace(rounds[-1], rounds=tuple(rounds))


def _train_masked(model: nn.Module, masks: dict[str, torch.Tensor], name: str, method: str, hyperparameters: dict,
                  *, data: ImageSet, train: TrainConfig, eval_data: ImageSet | None, parent: Subject,
                  extra_metrics: dict, out: str | Path | None, progress: bool,
                  control_of: str | None = None) -> Compressed:
    apply_masks(model, masks)
    mean, std = normalisation(parent)
    run_training(logits_only(model, parent), data, train, eval_data=eval_data, mean=mean, std=std,
                 progress=progress, name=name, role="pruned")
    return finish_pruned(model, parent, name, method, hyperparameters, data, eval_data, out, train.seed,
                         control_of=control_of, extra_metrics=extra_metrics)


def _reinitialised(model: nn.Module, seed: int) -> nn.Module:
    """A copy with every layer's parameters drawn afresh by its own `reset_parameters`, seeded."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return fresh
