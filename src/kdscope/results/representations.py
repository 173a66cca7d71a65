"""The CKA stage: layer x layer representation similarity of each model to the teacher, with its control."""

from __future__ import annotations

from dataclasses import dataclass

from kdscope.results.values import Unavailable, mapping, or_unavailable, require


def no_layers(name: str) -> str:
    """Why a model has no CKA grid (the one wording for the audit and for older results)."""
    return (f"{name} has no layers to tap (an int8 or TorchScript model has no float layers with hooks, or the "
            "plan's cka_layers named none)")


@dataclass
class CKAGridRecord:
    """Debiased (or biased) linear CKA between every teacher layer (rows) and every layer of the other model
    (columns), features averaged over space or flattened (`reduce`); `control` is the same grid with the images
    paired by one seeded permutation of all of them, which should be about 0."""

    rows: list[str]
    columns: list[str]
    reduce: str
    debiased: bool
    values: list[list[float]]
    control: list[list[float]]

    def to_plain(self) -> dict:
        return {"rows": self.rows, "columns": self.columns, "reduce": self.reduce, "debiased": self.debiased,
                "values": self.values, "control": self.control}

    @classmethod
    def from_plain(cls, plain: object) -> CKAGridRecord:
        return cls(**{name: require(plain, name) for name in cls.__dataclass_fields__})

    def last_layers(self) -> float:
        """CKA between the two models' last tapped layers (what the `cka` check gates)."""
        return self.values[-1][-1]

    def control_bound(self) -> float:
        """The largest |CKA| of the shuffled control: how far from 0 chance pairing reaches."""
        return max(abs(v) for row in self.control for v in row)


@dataclass
class CKAStage:
    teacher: str
    grids: dict[str, CKAGridRecord | Unavailable]

    def to_plain(self) -> dict:
        return {"teacher": self.teacher, "grids": {name: grid.to_plain() for name, grid in self.grids.items()}}

    @classmethod
    def from_plain(cls, plain: object) -> CKAStage:
        return cls(teacher=require(plain, "teacher"),
                   grids=mapping(require(plain, "grids"), lambda g: or_unavailable(g, CKAGridRecord.from_plain)))

    def grid(self, model: str) -> CKAGridRecord | Unavailable:
        return self.grids.get(model, Unavailable(f"{model} was not compared with the teacher"))
