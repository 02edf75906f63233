"""IR-50 image backbone: the first three stages of the ArcFace "improved residual" ResNet-50.

POSTER++ uses its 56x56, 28x28 and 14x14 feature maps (for a 112x112 input); the fourth stage and
the embedding head of the face-recognition network are not part of the model.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class Subsample(nn.Module):
    """Identity shortcut of a strided unit: a 1x1 max-pool with stride s is exactly a strided slice."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x


class ProjectionShortcut(nn.Sequential):
    """1x1 convolution + batch norm where the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
            bn=nn.BatchNorm2d(out_channels),
        ))


class ResidualBranch(nn.Sequential):
    """BN -> 3x3 conv -> PReLU -> strided 3x3 conv -> BN (pre-activation "IR" unit)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(OrderedDict(
            bn1=nn.BatchNorm2d(in_channels),
            conv1=nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            act=nn.PReLU(out_channels),
            conv2=nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False),
            bn2=nn.BatchNorm2d(out_channels),
        ))


class IRBlock(nn.Module):
    """One improved-residual unit."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if in_channels == out_channels:
            self.shortcut: nn.Module = Subsample(stride)
        else:
            self.shortcut = ProjectionShortcut(in_channels, out_channels, stride)
        self.residual = ResidualBranch(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


def make_stage(in_channels: int, out_channels: int, depth: int) -> nn.Sequential:
    """A stage halves the resolution in its first unit."""
    blocks = [IRBlock(in_channels, out_channels, 2)]
    blocks += [IRBlock(out_channels, out_channels, 1) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class Stem(nn.Sequential):
    """3x3 convolution -> BN -> PReLU at full resolution."""

    def __init__(self, out_channels: int = 64) -> None:
        super().__init__(OrderedDict(
            conv=nn.Conv2d(3, out_channels, 3, 1, 1, bias=False),
            bn=nn.BatchNorm2d(out_channels),
            act=nn.PReLU(out_channels),
        ))


class IR50(nn.Module):
    """Stages 1-3 of IR-50; ``forward`` returns the three stage outputs."""

    channels = (64, 128, 256)

    def __init__(self) -> None:
        super().__init__()
        self.stem = Stem(64)
        self.stage1 = make_stage(64, 64, 3)
        self.stage2 = make_stage(64, 128, 4)
        self.stage3 = make_stage(128, 256, 14)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        f1 = self.stage1(x)
        f2 = self.stage2(f1)
        f3 = self.stage3(f2)
        return f1, f2, f3
