"""Lineage records: where a compressed model came from and what it costs (accuracy, size, latency)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from kdscope.core.profile import cpu_latency_ms, parameter_counts, state_dict_bytes
from kdscope.core.stats import bootstrap_ci
from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet


@dataclass(frozen=True)
class Lineage:
    """Parent, method, hyper-parameters, data, seed and measured metrics of one compressed model."""

    name: str
    parent: str
    method: str
    hyperparameters: dict
    data: dict
    seed: int
    metrics: dict = field(default_factory=dict)
    control_of: str | None = None

    def to_dict(self) -> dict:
        """The plain JSON form, exactly as a checkpoint's metadata holds it (tuples become lists), so the lineage a
        Subject carries in memory equals the one read back from disk."""
        return json.loads(json.dumps(asdict(self)))


def model_metrics(subject: Subject, eval_data: ImageSet | None, *, latency_batch: int = 64,
                  repeats: int = 20) -> dict:
    """Accuracy (with a 95% bootstrap interval), parameter and non-zero counts, state_dict size, CPU latency."""
    metrics = {**parameter_counts(subject.model), "file_bytes": state_dict_bytes(subject.model)}
    if eval_data is not None:
        correct = (subject.predict(eval_data.images()) == eval_data.targets()).numpy()
        accuracy, low, high = bootstrap_ci(correct)
        metrics.update({"accuracy": accuracy, "accuracy_ci95": [low, high], "eval_images": len(correct)})
        shape = eval_data.image_shape
    else:
        shape = (3, 32, 32)
    metrics["cpu_latency_ms"] = cpu_latency_ms(subject, shape, latency_batch, repeats)
    return metrics
