"""The sanity stage: Adebayo et al.'s model-randomisation test of each explainer on each model."""

from __future__ import annotations

from dataclasses import dataclass

from kdscope.results.values import (
    Interval,
    SchemaError,
    Unavailable,
    interval,
    mapping,
    optional_interval,
    require,
    sequence,
)


@dataclass
class SanityStep:
    """Similarity of the maps after one more layer was randomised to the original maps, per metric, over the
    images where both maps vary; `degenerate` counts those where one is constant."""

    step: int
    layers: list[str]
    degenerate: int
    similarity: dict[str, Interval]

    def to_plain(self) -> dict:
        return {"step": self.step, "layers": self.layers, "degenerate": self.degenerate,
                "similarity": {name: list(value) for name, value in self.similarity.items()}}

    @classmethod
    def from_plain(cls, plain: object) -> SanityStep:
        return cls(step=require(plain, "step"), layers=sequence(require(plain, "layers"), str),
                   degenerate=require(plain, "degenerate"), similarity=mapping(require(plain, "similarity"), interval))


@dataclass
class SanityCheck:
    """One explainer's check on one model: its steps, its verdict ('pass', 'fail' or 'inconclusive') and why."""

    method: str
    kind: str
    verdict: str
    reason: str
    threshold: float
    images: int
    randomised_share: float | None
    random_vs_random: Interval | None
    steps: list[SanityStep]

    def to_plain(self) -> dict:
        return {"method": self.method, "kind": self.kind, "verdict": self.verdict, "reason": self.reason,
                "threshold": self.threshold, "images": self.images, "randomised_share": self.randomised_share,
                "random_vs_random": None if self.random_vs_random is None else list(self.random_vs_random),
                "steps": [step.to_plain() for step in self.steps]}

    @classmethod
    def from_plain(cls, plain: object) -> SanityCheck:
        return cls(method=require(plain, "method"), kind=require(plain, "kind"), verdict=require(plain, "verdict"),
                   reason=require(plain, "reason"), threshold=require(plain, "threshold"),
                   images=require(plain, "images"), randomised_share=require(plain, "randomised_share"),
                   random_vs_random=optional_interval(require(plain, "random_vs_random")),
                   steps=sequence(require(plain, "steps"), SanityStep.from_plain))

    def final_similarity(self) -> Interval | None:
        """Spearman |map| with every layer randomised (what the verdict compares with the threshold)."""
        return self.steps[-1].similarity["spearman_abs"] if self.steps else None


@dataclass
class SanityStage:
    """Per model and explainer, the check or why it could not run. JSON: {model: [check, ...]}, a check that could
    not run as {"method": ..., "unavailable": reason}."""

    models: dict[str, dict[str, SanityCheck | Unavailable]]

    def to_plain(self) -> dict:
        return {name: [{"method": method, **check.to_plain()} if isinstance(check, Unavailable) else check.to_plain()
                       for method, check in per_method.items()]
                for name, per_method in self.models.items()}

    @classmethod
    def from_plain(cls, plain: object) -> SanityStage:
        def per_method(entries: object) -> dict[str, SanityCheck | Unavailable]:
            checks: dict[str, SanityCheck | Unavailable] = {}
            for entry in sequence(entries, lambda e: e):
                method = require(entry, "method")
                if method in checks:
                    raise SchemaError(f"checks the method '{method}' twice")
                checks[method] = (Unavailable(require(entry, "unavailable")) if "unavailable" in entry
                                  else SanityCheck.from_plain(entry))
            return checks

        return cls(mapping(plain, per_method))

    def ran(self) -> list[tuple[str, SanityCheck]]:
        """(model, check) for every check that ran, in order."""
        return [(name, check) for name, per_method in self.models.items() for check in per_method.values()
                if isinstance(check, SanityCheck)]

    def pass_share(self, model: str) -> float:
        """The share of the model's checks that ran and passed."""
        checks = [check for name, check in self.ran() if name == model]
        if not checks:
            raise LookupError(f"no sanity check could run on {model}")
        return sum(check.verdict == "pass" for check in checks) / len(checks)
