"""What every compression technique returns: the new Subject, its lineage and the technique's other outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import fx

from kdscope.compress.lineage import Lineage
from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet


@dataclass(frozen=True)
class Compressed:
    """A compressed Subject and its lineage. Building one attaches the lineage to the Subject
    (`subject.metadata["lineage"]`, the dict a checkpoint's JSON holds), so an audit of the Subject in memory reads
    the same lineage as one of the saved checkpoint.

    `checkpoint`: where it was saved (with `out=`). `control`: the model it must be judged against (distillation's
    independent student, a lottery ticket's random re-initialisation); `controls`: every control trained beside it,
    `control` first when there is one (distillation's pseudo-label, random-teacher and other-teacher students).
    `reference`: the int8 graph the compiled model runs, what a saved archive holds. `rounds`: every round of
    iterative pruning in order, the last being this one.
    """

    subject: Subject
    lineage: Lineage
    checkpoint: Path | None = None
    control: Compressed | None = None
    controls: tuple[Compressed, ...] = ()
    reference: fx.GraphModule | None = None
    rounds: tuple[Compressed, ...] = ()

    def __post_init__(self) -> None:
        self.subject.metadata["lineage"] = self.lineage.to_dict()


def check_data(data: object, technique: str, *, required: bool) -> None:
    """Refuse a misplaced argument with the fix: every technique takes (parent, data, config), data second."""
    if data is None and not required:
        return
    if not isinstance(data, ImageSet):
        raise TypeError(f"{technique}(parent, data, config): data must be an ImageSet, got {type(data).__name__}"
                        + ("" if required else "; without data, pass the settings by name: config=..."))
    if len(data) == 0:
        raise ValueError(f"{technique} got an empty ImageSet as data")
