"""The attacks stage: white-box success and transfer between every pair of models, and robust-accuracy curves."""

from __future__ import annotations

from dataclasses import dataclass, field

from kdscope.results.values import Interval, Unavailable, interval, mapping, or_unavailable, require, sequence

NO_EPS_ATTACK = "no attack in the plan has an eps"
NO_ROBUST_EPS = "the plan's robust_eps is empty"


@dataclass
class TransferCell:
    """Examples crafted on `source`, tried on `target`. Conditional: the share that fooled the target among those
    that fooled the source and that the target got right; unconditional: the share that fooled the target;
    fooling: the share that changed the target's prediction. NaN where no image was eligible."""

    source: str
    target: str
    conditional: Interval
    unconditional: Interval
    fooling: Interval

    def to_plain(self) -> dict:
        return {"source": self.source, "target": self.target, "conditional": list(self.conditional),
                "unconditional": list(self.unconditional), "fooling": list(self.fooling)}

    @classmethod
    def from_plain(cls, plain: object) -> TransferCell:
        return cls(source=require(plain, "source"), target=require(plain, "target"),
                   **{name: interval(require(plain, name)) for name in ("conditional", "unconditional", "fooling")})


@dataclass
class FoolingGap:
    """Ojha et al.'s test: among images crafted on `source` that fool it and that both `student` and `control` get
    right when clean, the share that fools the student minus the share that fools the control (paired, in [-1, 1]),
    over `images` such images. From the teacher it asks whether distillation passed on the teacher's
    vulnerabilities; from a foreign model it is the control (no difference expected)."""

    source: str
    student: str
    control: str
    difference: Interval
    images: int

    def to_plain(self) -> dict:
        return {"source": self.source, "student": self.student, "control": self.control,
                "difference": list(self.difference), "images": self.images}

    @classmethod
    def from_plain(cls, plain: object) -> FoolingGap:
        return cls(source=require(plain, "source"), student=require(plain, "student"),
                   control=require(plain, "control"), difference=interval(require(plain, "difference")),
                   images=require(plain, "images"))


@dataclass
class TransferMatrix:
    models: list[str]
    attack: str
    params: dict
    rounded_to_8bit: bool
    white_box_success: dict[str, float]
    cells: list[TransferCell]
    gaps: list[FoolingGap] = field(default_factory=list)

    def to_plain(self) -> dict:
        plain = {"models": self.models, "attack": self.attack, "params": self.params,
                 "rounded_to_8bit": self.rounded_to_8bit, "white_box_success": self.white_box_success,
                 "cells": [cell.to_plain() for cell in self.cells]}
        if self.gaps:  # an audit without a distilled student and its control reads as before they existed
            plain["gaps"] = [gap.to_plain() for gap in self.gaps]
        return plain

    @classmethod
    def from_plain(cls, plain: object) -> TransferMatrix:
        return cls(models=sequence(require(plain, "models"), str), attack=require(plain, "attack"),
                   params=require(plain, "params"), rounded_to_8bit=require(plain, "rounded_to_8bit"),
                   white_box_success=mapping(require(plain, "white_box_success"), float),
                   cells=sequence(require(plain, "cells"), TransferCell.from_plain),
                   gaps=sequence(plain.get("gaps", []), FoolingGap.from_plain))

    def cell(self, source: str, target: str) -> TransferCell | Unavailable:
        found = next((c for c in self.cells if c.source == source and c.target == target), None)
        return found or Unavailable(f"no transfer cell from {source} to {target}")


@dataclass
class RobustPoint:
    """Accuracy under the attack at one eps, with its 95% interval (low, high)."""

    eps: float
    accuracy: float
    ci95: tuple[float, float]

    def to_plain(self) -> dict:
        return {"eps": self.eps, "accuracy": self.accuracy, "ci95": list(self.ci95)}

    @classmethod
    def from_plain(cls, plain: object) -> RobustPoint:
        low, high = require(plain, "ci95")
        return cls(eps=float(require(plain, "eps")), accuracy=float(require(plain, "accuracy")),
                   ci95=(float(low), float(high)))

    def as_interval(self) -> Interval:
        return self.accuracy, *self.ci95


@dataclass
class RobustCurves:
    """Each model's accuracy against eps under the plan's first attack with an eps, crafted on the model itself."""

    attack: str
    params: dict
    images: int
    models: dict[str, list[RobustPoint]]

    def to_plain(self) -> dict:
        return {"attack": self.attack, "params": self.params, "images": self.images,
                "models": {name: [p.to_plain() for p in points] for name, points in self.models.items()}}

    @classmethod
    def from_plain(cls, plain: object) -> RobustCurves:
        return cls(attack=require(plain, "attack"), params=require(plain, "params"), images=require(plain, "images"),
                   models=mapping(require(plain, "models"), lambda p: sequence(p, RobustPoint.from_plain)))

    def nearest(self, model: str, eps: float) -> RobustPoint:
        if not self.models.get(model):
            raise LookupError(f"no robust-accuracy curve for {model}")
        return min(self.models[model], key=lambda p: abs(p.eps - eps))


@dataclass
class AttacksStage:
    matrices: list[TransferMatrix]
    robust_curves: RobustCurves | Unavailable

    def to_plain(self) -> dict:
        return {"matrices": [m.to_plain() for m in self.matrices], "robust_curves": self.robust_curves.to_plain()}

    @classmethod
    def from_plain(cls, plain: object) -> AttacksStage:
        return cls(matrices=sequence(require(plain, "matrices"), TransferMatrix.from_plain),
                   robust_curves=or_unavailable(require(plain, "robust_curves"), RobustCurves.from_plain))
