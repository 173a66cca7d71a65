"""bfloat16 weights and activations: half the bytes of fp32 and, on CPUs with native bf16 (AVX512-BF16, AMX),
faster convolutions through oneDNN. Whether it is faster here is measured, not assumed: the lineage records the
latency ratio to the fp32 parent from the same run."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils import _pytree as pytree

from kdscope.core.checkpoint import REBUILD_ATTRIBUTES


class Bf16Model(nn.Module):
    """Runs a bf16 copy of a float model on float32 inputs and returns what the model returns (a tensor, a tuple, a
    dict, a HuggingFace `ModelOutput`) with its tensors in float32, so the Subject's output rule still finds the
    logits. It keeps the inner model's record of how to rebuild it (zoo architecture or factory)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model.to(torch.bfloat16)
        for attribute in REBUILD_ATTRIBUTES:
            if hasattr(model, attribute):
                setattr(self, attribute, getattr(model, attribute))

    def forward(self, x: torch.Tensor) -> object:
        return pytree.tree_map_only(torch.Tensor, _float32, self.inner(x.to(torch.bfloat16)))


def _float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.float() if tensor.is_floating_point() else tensor


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX on this CPU (Linux flags); elsewhere bf16 is emulated and usually slower."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
