"""The pass/fail checks' records: which models a check covered, each one's value and verdict."""

from __future__ import annotations

from dataclasses import dataclass

from kdscope.results.values import require, sequence


@dataclass
class CheckValue:
    """One model under one check: its value and verdict, or (value None, failed) with the reason it was not
    measured in `note`."""

    model: str
    value: float | None
    passed: bool
    note: str | None = None

    def to_plain(self) -> dict:
        plain = {"model": self.model, "value": self.value, "passed": self.passed}
        return plain if self.note is None else {**plain, "note": self.note}

    @classmethod
    def from_plain(cls, plain: object) -> CheckValue:
        return cls(model=require(plain, "model"), value=require(plain, "value"), passed=require(plain, "passed"),
                   note=plain.get("note"))


@dataclass
class CheckRecord:
    """One check as written, read as metric, operator and threshold; it passes when every model it covers passes
    (`note` says why it covered none)."""

    check: str
    metric: str
    operator: str
    threshold: float
    models: list[CheckValue]
    passed: bool
    note: str | None

    def to_plain(self) -> dict:
        return {"check": self.check, "metric": self.metric, "operator": self.operator, "threshold": self.threshold,
                "models": [m.to_plain() for m in self.models], "passed": self.passed, "note": self.note}

    @classmethod
    def from_plain(cls, plain: object) -> CheckRecord:
        return cls(check=require(plain, "check"), metric=require(plain, "metric"), operator=require(plain, "operator"),
                   threshold=require(plain, "threshold"), models=sequence(require(plain, "models"),
                                                                          CheckValue.from_plain),
                   passed=require(plain, "passed"), note=require(plain, "note"))
