"""One batch of audit images and the work stages share on it: each model's forward pass (probabilities and the
pooled features CKA taps), the CKA control's partner features, and each model's map per explainer, computed on
first use and dropped with the batch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from kdscope.audit.context import AuditContext
from kdscope.compare.cka import as_rows
from kdscope.core.subject import Subject

EXPLAINER_ERRORS = (ValueError, TypeError, RuntimeError, AttributeError)


class Batch:
    """Audit positions `positions` (the `number`-th batch), their raw images `x`, labels `y` and object masks."""

    def __init__(self, context: AuditContext, number: int, positions: np.ndarray, x: torch.Tensor, y: torch.Tensor,
                 masks: torch.Tensor | None) -> None:
        self.context, self.number, self.positions, self.x, self.y, self.masks = (context, number, positions, x, y,
                                                                                 masks)
        self._forward: dict[str, dict] = {}
        self._partners: dict[str, dict[str, torch.Tensor]] = {}
        self._maps: dict[tuple[str, str], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.positions)

    def forward(self, subject: Subject) -> dict:
        """{'probabilities': (n, K) on the CPU, 'features': {layer: (n, D) float64 rows}} from one pass."""
        if subject.name not in self._forward:
            probabilities, features = self._run(subject, self.x)
            self._forward[subject.name] = {"probabilities": probabilities, "features": features}
        return self._forward[subject.name]

    def partner_features(self, subject: Subject) -> dict[str, torch.Tensor]:
        """The CKA control: features of the images the audit's seeded pairing assigns to this batch's images."""
        if subject.name not in self._partners:
            partners = self.context.read(self.context.pairing[self.positions])
            self._partners[subject.name] = self._run(subject, partners)[1]
        return self._partners[subject.name]

    def maps(self, subject: Subject, method: str) -> torch.Tensor | None:
        """(n, H, W) maps of the ground-truth classes on the CPU, or None when the method cannot explain this model
        (the reason is in `context.refusals`, from the first batch that tried)."""
        from kdscope.explainers import explain

        key = (subject.name, method)
        if key in self.context.refusals:
            return None
        if key not in self._maps:
            try:
                self._maps[key] = explain(subject, self.x, self.y, method=method).maps_2d.detach().cpu()
            except EXPLAINER_ERRORS as error:
                self.context.refusals[key] = str(error)
                return None
        return self._maps[key]

    def _run(self, subject: Subject, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        layers = self.context.cka_layers(subject)
        with torch.no_grad(), subject.capture(layers) as taps:
            probabilities = subject.logits(x).float().softmax(1).cpu()
        return probabilities, {name: as_rows(taps[name]).cpu() for name in layers}


def batch_of(context: AuditContext, number: int) -> Batch:
    """The `number`-th batch of audit images (positions number*B ... in the audit's order)."""
    size = context.plan.batch_size
    positions = np.arange(number * size, min((number + 1) * size, len(context)))
    masks = None if context.images.masks is None else torch.from_numpy(np.asarray(context.images.masks[positions]))
    return Batch(context, number, positions, context.read(positions), context.y[positions], masks)


def rounds(context: AuditContext, rank: int, world: int) -> Iterator[tuple[Batch | None, int]]:
    """Per round of `world` batches: this rank's batch (None when the images ran out) and how many images the whole
    round covers. Every rank goes through the same number of rounds, so collectives pair up."""
    size, count = context.plan.batch_size, context.batch_count
    for first in range(0, count, world):
        images = min(len(context), (first + world) * size) - first * size
        number = first + rank
        yield (batch_of(context, number) if number < count else None), images
