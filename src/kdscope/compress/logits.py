"""A network seen through its Subject's output rule: the form in which compression trains and captures models it did
not write (a HuggingFace model returns a `ModelOutput`, others a tuple or a dict, or logits under the user's key)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kdscope.core.subject import Subject

PREFIX = "network."


class LogitsOnly(nn.Module):
    """`network` returning only the logits that `select` finds in its output. The parameters are the network's own,
    so training this trains the network in place, and a captured graph (torch.export, int8) returns one tensor
    whatever the network returns. Module names inside it carry `PREFIX`."""

    def __init__(self, network: nn.Module, select: Callable[[object], torch.Tensor]) -> None:
        super().__init__()
        self.network = network
        self.select = select

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.select(self.network(x))


def logits_only(model: nn.Module, subject: Subject) -> LogitsOnly:
    """`model` (the Subject's network or a copy of it) with `subject`'s rule for finding the logits."""
    return LogitsOnly(model, subject.select_logits)
