"""Batched, seeded augmentations on raw [0, 1] images (before the Subject's normalisation)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Colour jitter (brightness, contrast, saturation, hue rotation), random crop with padding, horizontal flip.

    `hue` is the largest hue rotation as a fraction of a full turn: 0.5 draws any hue, which is what makes a model
    colour-invariant (ProbeWorld's colour shift is a 180-degree hue rotation of the object).

    `mixup` > 0 blends each image with another of the batch, weights drawn from Beta(mixup, mixup) per image (Beyer
    et al. 2022's function matching): no hard label describes such a view, so only a loss on a teacher's output
    of the same view may train on it (`train` refuses it with its own cross-entropy).
    """

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    crop_padding: int = 0
    flip: bool = False
    mixup: float = 0.0

    @classmethod
    def colour_jitter(cls, strength: float = 0.4, *, crop_padding: int = 2, flip: bool = True) -> Augment:
        return cls(strength, strength, strength, 0.5, crop_padding, flip)

    @property
    def active(self) -> bool:
        return any((self.brightness, self.contrast, self.saturation, self.hue, self.crop_padding, self.flip,
                    self.mixup))

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch; randomness comes only from `generator`; the input is not modified."""
        if self.hue:
            x = _rotate_hue(x, self._uniform(x, generator, self.hue) * 2 * math.pi)
        if self.brightness:
            x = x * (1 + self._uniform(x, generator, self.brightness)).view(-1, 1, 1, 1)
        if self.contrast:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = mean + (x - mean) * (1 + self._uniform(x, generator, self.contrast)).view(-1, 1, 1, 1)
        if self.saturation:
            grey = x.mean(dim=1, keepdim=True)
            x = grey + (x - grey) * (1 + self._uniform(x, generator, self.saturation)).view(-1, 1, 1, 1)
        x = x.clamp(0.0, 1.0)
        if self.crop_padding:
            x = _random_crop(x, self.crop_padding, generator)
        if self.flip:
            flip = torch.rand(len(x), generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
        if self.mixup:
            x = _mix(x, self.mixup, generator)
        return x

    @staticmethod
    def _uniform(x: torch.Tensor, generator: torch.Generator, half_width: float) -> torch.Tensor:
        return ((torch.rand(len(x), generator=generator) * 2 - 1) * half_width).to(x.device)


def _mix(x: torch.Tensor, concentration: float, generator: torch.Generator) -> torch.Tensor:
    """Each image blended with a random partner of the batch, its weight from Beta(c, c) (seeded by `generator`)."""
    partner = torch.randperm(len(x), generator=generator).to(x.device)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    weight = torch.from_numpy(np.random.default_rng(seed).beta(concentration, concentration, len(x)))
    weight = weight.to(x.device, x.dtype).view(-1, 1, 1, 1)
    return weight * x + (1 - weight) * x[partner]


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate colours about the grey axis (Rodrigues' formula): an exact hue rotation that keeps grey levels."""
    if x.shape[1] != 3:
        return x
    k = torch.full((3,), 1 / math.sqrt(3), device=x.device)
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], device=x.device)
    cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    rotation = cos * torch.eye(3, device=x.device) + (1 - cos) * torch.outer(k, k) + sin * cross
    return torch.einsum("nij,njhw->nihw", rotation, x)


def _random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
    return padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2).contiguous()
