"""What a model costs, measured one way for every caller (compression lineage, the audit's model table, the CLI):
parameter counts, serialised size, CPU latency, and a digest of its weights."""

from __future__ import annotations

import hashlib
import io
import statistics
import time

import torch

from kdscope.core.subject import Subject


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """All parameters and the non-zero ones (a pruned model's zeros still take space until they are removed)."""
    parameters = list(model.parameters())
    return {"parameters": sum(p.numel() for p in parameters),
            "nonzero_parameters": sum(int(torch.count_nonzero(p)) for p in parameters)}


def state_dict_bytes(model: torch.nn.Module) -> int:
    """Size of the model's state_dict as `torch.save` writes it."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.no_grad()
def cpu_latency_ms(subject: Subject, shape: tuple[int, ...], batch: int = 64, repeats: int = 20,
                   budget_s: float = 2.0) -> float | None:
    """Median wall time of one forward pass on a batch (milliseconds); None when the model is not on the CPU.
    At most `repeats` timed calls, at least min(3, repeats), and no new call once `budget_s` seconds are spent: a
    ResNet-18 at 224x224 takes seconds per batch, and its median needs no more calls than a small CNN's."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if subject.device.type != "cpu":
        return None
    x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0))
    subject.logits(x)  # one-off costs: allocation, an int8 model's compiling
    times: list[float] = []
    while len(times) < repeats and (len(times) < 3 or sum(times) < budget_s * 1000):
        start = time.perf_counter()
        subject.logits(x)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of the model's weights and buffers: the same digest means the same trained model."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if isinstance(tensor, torch.Tensor):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
