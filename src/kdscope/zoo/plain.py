"""Plain convolutional networks: the narrow student and a VGG-style CNN (no residuals, hookable ReLU modules)."""

from __future__ import annotations

import torch
from torch import nn


def _conv_block(in_channels: int, out_channels: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return layers


class NarrowCNN(nn.Module):
    """The student: a plain (non-residual) stack of 3x3 conv + BN + ReLU, `blocks` per stage at widths w, 2w, 4w,
    a max-pool after each stage but the last, global average pool and a linear head."""

    def __init__(self, num_classes: int = 10, width: int = 8, blocks: int = 2, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for index, stage_width in enumerate((width, 2 * width, 4 * width)):
            for _ in range(blocks):
                layers += _conv_block(channels, stage_width, True)
                channels = stage_width
            if index < 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))


class VGG(nn.Module):
    """VGG-style: pairs of 3x3 conv + BN + ReLU at widths w, 2w, 4w, each pair followed by a max-pool; MLP head."""

    def __init__(self, num_classes: int = 10, width: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for stage_width in (width, 2 * width, 4 * width):
            layers += _conv_block(channels, stage_width, True) + _conv_block(stage_width, stage_width, True)
            layers.append(nn.MaxPool2d(2))
            channels = stage_width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, channels), nn.ReLU(inplace=True), nn.Linear(channels, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))
