"""Occlusion (Zeiler & Fergus 2014): slide a baseline-valued patch over the image; each pixel gets the mean drop in
the target's score over the patches that cover it (captum's definition). Patches of all images share forward
passes, `batch_size` occluded images at a time, under no_grad. Gradient-free: on an int8 Subject it runs the int8
model itself.
"""

from __future__ import annotations

import torch

from kdscope.core.subject import Subject
from kdscope.explainers.base import Explanation, check_explain_inputs, target_logits


def patch_windows(height: int, width: int, patch: int, stride: int) -> torch.Tensor:
    """(P, 1, H, W) booleans, one per patch position, row by row from the top-left corner. As in captum, there are
    ceil((side - patch) / stride) + 1 positions per axis and the last one is cut at the border, so every pixel is
    covered even when (side - patch) is not a multiple of the stride."""
    if patch < 1 or stride < 1 or patch > min(height, width):
        raise ValueError(f"need 1 <= patch <= image side ({min(height, width)}) and stride >= 1, got patch={patch}, "
                         f"stride={stride}")
    rows = torch.arange(height).view(1, -1, 1)
    cols = torch.arange(width).view(1, 1, -1)
    tops = stride * torch.arange(-(-(height - patch) // stride) + 1)
    lefts = stride * torch.arange(-(-(width - patch) // stride) + 1)
    top, left = torch.meshgrid(tops, lefts, indexing="ij")
    top, left = top.reshape(-1, 1, 1), left.reshape(-1, 1, 1)
    windows = (rows >= top) & (rows < top + patch) & (cols >= left) & (cols < left + patch)
    return windows.unsqueeze(1)


@torch.no_grad()
def occlusion(subject: Subject, x: torch.Tensor, target: torch.Tensor, *, patch: int = 8, stride: int = 4,
              baseline: float | torch.Tensor = 0.5, batch_size: int = 64, score: str = "logit") -> Explanation:
    """`score`: 'logit' or 'probability' of the target class; `baseline` a value, or a (C,) or (C, H, W) tensor.
    `batch_size` occluded images go through each forward pass: 64 measured fastest on a 2-core CPU (at 256 the
    activations fall out of cache and a pass costs more per image)."""
    if score not in ("logit", "probability"):
        raise ValueError(f"score must be 'logit' or 'probability', got {score!r}")
    target = check_explain_inputs(subject, x, target)
    x = x.to(subject.device)
    n, channels, height, width = x.shape
    windows = patch_windows(height, width, patch, stride).to(x.device)
    fill = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    fill = fill.view(-1, 1, 1) if fill.ndim == 1 else fill
    clean = _score(subject, x, target, score)
    positions = len(windows)
    drops = torch.empty(n * positions, device=x.device)
    with subject.guard():
        for start in range(0, n * positions, batch_size):
            index = torch.arange(start, min(start + batch_size, n * positions), device=x.device)
            image, window = index // positions, index % positions
            occluded = torch.where(windows[window], fill, x[image])
            drops[index] = clean[image] - _score(subject, occluded, target[image], score, checked=True)
    covered = windows.float().sum(0)
    total = torch.einsum("np,phw->nhw", drops.view(n, positions), windows.squeeze(1).float())
    maps = (total / covered.clamp(min=1)).unsqueeze(1)
    params = {"patch": patch, "stride": stride, "baseline": baseline if isinstance(baseline, float) else "tensor",
              "score": score}
    return Explanation(maps, "occlusion", subject.forward_source, params)


def _score(subject: Subject, images: torch.Tensor, target: torch.Tensor, score: str,
           checked: bool = False) -> torch.Tensor:
    """The target's score; `checked` skips re-validating occluded copies of already validated images (inside the
    caller's guard), which would otherwise cost a scan of every batch."""
    logits = subject.select_logits(subject.model(subject.normalize(images))) if checked else subject.logits(images)
    if score == "probability":
        logits = logits.float().softmax(1)
    return target_logits(logits, target).float()
