"""Lineage records: where a compressed model came from and what it costs (accuracy, size, latency)."""

from __future__ import annotations

import io
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from kdscope.data.imageset import ImageSet
from kdscope.stats import bootstrap_ci
from kdscope.subject import Subject


@dataclass
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
        return asdict(self)


def model_metrics(subject: Subject, eval_data: ImageSet | None, *, latency_batch: int = 64,
                  repeats: int = 20) -> dict:
    """Accuracy (with a 95% bootstrap interval), parameter and non-zero counts, state_dict size, CPU latency."""
    parameters = [p for p in subject.model.parameters()]
    metrics = {
        "parameters": sum(p.numel() for p in parameters),
        "nonzero_parameters": sum(int(torch.count_nonzero(p)) for p in parameters),
        "file_bytes": state_dict_bytes(subject.model),
    }
    if eval_data is not None:
        correct = (subject.predict(eval_data.images()) == eval_data.targets()).numpy()
        accuracy, low, high = bootstrap_ci(correct)
        metrics.update({"accuracy": accuracy, "accuracy_ci95": [low, high], "eval_images": len(correct)})
        shape = eval_data.image_shape
    else:
        shape = (3, 32, 32)
    metrics["cpu_latency_ms"] = cpu_latency_ms(subject, shape, latency_batch, repeats)
    return metrics


def state_dict_bytes(model: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.no_grad()
def cpu_latency_ms(subject: Subject, shape: tuple[int, ...], batch: int = 64, repeats: int = 20) -> float | None:
    """Median wall time of one forward pass on a batch (milliseconds); None when the model is not on the CPU."""
    if subject.device.type != "cpu":
        return None
    x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        subject.logits(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subject.logits(x)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
