"""The audited models as records: name, role, lineage (how it was made and from what) and a measured profile."""

from __future__ import annotations

from dataclasses import dataclass

from kdscope.results.values import require


@dataclass
class ModelProfile:
    """Size and speed: counts and file size from the lineage when there is one, CPU latency measured in the
    audit's own run (batch 64), so that ratios between models compare like with like."""

    parameters: int
    nonzero_parameters: int
    file_bytes: int
    sparsity: float | None
    quantized_layers: int | None
    float_layers: int | None
    cpu_latency_ms: float | None

    def to_plain(self) -> dict:
        return {"parameters": self.parameters, "nonzero_parameters": self.nonzero_parameters,
                "file_bytes": self.file_bytes, "sparsity": self.sparsity, "quantized_layers": self.quantized_layers,
                "float_layers": self.float_layers, "cpu_latency_ms": self.cpu_latency_ms}

    @classmethod
    def from_plain(cls, plain: object) -> ModelProfile:
        return cls(**{name: require(plain, name) for name in cls.__dataclass_fields__})


@dataclass
class ModelRecord:
    """One audited model. `role` is 'teacher', 'student', 'independent_student', 'pruned', 'quantized' or None;
    `method`, `parent` and `hyperparameters` come from its lineage (None for a model trained from scratch)."""

    name: str
    role: str | None
    method: str | None
    parent: str | None
    hyperparameters: dict | None
    metrics: dict
    profile: ModelProfile

    def to_plain(self) -> dict:
        return {"name": self.name, "role": self.role, "method": self.method, "parent": self.parent,
                "hyperparameters": self.hyperparameters, "metrics": self.metrics, "profile": self.profile.to_plain()}

    @classmethod
    def from_plain(cls, plain: object) -> ModelRecord:
        return cls(name=str(require(plain, "name")), role=require(plain, "role"), method=require(plain, "method"),
                   parent=require(plain, "parent"), hyperparameters=require(plain, "hyperparameters"),
                   metrics=require(plain, "metrics"), profile=ModelProfile.from_plain(require(plain, "profile")))


def profile_ratio(model: ModelRecord, reference: ModelRecord, key: str) -> float | None:
    """The model's profile value `key` over the reference's (its size or latency against the teacher's); None
    where either was not measured or the reference's is 0."""
    value, base = getattr(model.profile, key), getattr(reference.profile, key)
    return value / base if value is not None and base else None
