"""MobileFaceNet trained for 68-point facial landmarks: the frozen landmark stream of POSTER++.

POSTER++ takes three of its feature maps (28x28x64, 14x14x128, 7x7x512 for a 112x112 input). Its
own 136-value landmark head is kept so the pretrained file loads whole, but it only runs when asked:
inside POSTER++ it is fed normalized RGB rather than the BGR /255 crops it was trained on, so its
points are not meaningful landmarks there.
"""
from __future__ import annotations

import enum
from collections import OrderedDict

import torch
from torch import nn

from .fusions import Fusion, conv_bn
from .weights_api import Weights


class ConvBN(nn.Sequential):
    """Convolution + batch norm, optionally followed by PReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1,
                 padding: int = 0, groups: int = 1, act: bool = True) -> None:
        layers = OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False),
            bn=nn.BatchNorm2d(out_channels),
        )
        if act:
            layers["act"] = nn.PReLU(out_channels)
        super().__init__(layers)


class InvertedBottleneck(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, residual when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.expand = ConvBN(in_channels, hidden)
        self.depthwise = ConvBN(hidden, hidden, 3, stride, 1, groups=hidden)
        self.project = ConvBN(hidden, out_channels, act=False)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


def make_stage(channels: int, hidden: int, depth: int) -> nn.Sequential:
    return nn.Sequential(*[InvertedBottleneck(channels, channels, hidden, 1, True) for _ in range(depth)])


class LandmarkHead(nn.Module):
    """Global depthwise 7x7 conv -> linear -> BN: 68 (x, y) points as 136 values."""

    def __init__(self, channels: int = 512, outputs: int = 136) -> None:
        super().__init__()
        self.pool = ConvBN(channels, channels, 7, groups=channels, act=False)
        self.fc = nn.Linear(channels, outputs, bias=False)
        self.bn = nn.BatchNorm1d(outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(self.pool(x).flatten(1)))


class MobileFaceNet(nn.Module):
    """MobileFaceNet feature extractor with an optional landmark head."""

    channels = (64, 128, 512)

    def __init__(self, num_outputs: int = 136) -> None:
        super().__init__()
        self.stem = ConvBN(3, 64, 3, 2, 1)
        self.stem_dw = ConvBN(64, 64, 3, 1, 1, groups=64)
        self.down1 = InvertedBottleneck(64, 64, 128, 2, False)
        self.stage1 = make_stage(64, 128, 4)
        self.down2 = InvertedBottleneck(64, 128, 256, 2, False)
        self.stage2 = make_stage(128, 256, 6)
        self.down3 = InvertedBottleneck(128, 128, 512, 2, False)
        self.stage3 = make_stage(128, 256, 2)
        self.expand = ConvBN(128, 512)
        self.head = LandmarkHead(512, num_outputs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three feature maps POSTER++ uses as queries (head not run)."""
        f1 = self.stage1(self.down1(self.stem_dw(self.stem(x))))
        f2 = self.stage2(self.down2(f1))
        f3 = self.expand(self.stage3(self.down3(f2)))
        return f1, f2, f3

    def landmarks(self, f3: torch.Tensor) -> torch.Tensor:
        """The 136-value landmark head on the last feature map."""
        return self.head(f3)

    def cpu_fusions(self) -> list[Fusion]:
        """The chains ``fuse_for_cpu`` folds: every convolution with the batch norm after it (the
        PReLUs stay: oneDNN has no PReLU post-op), the landmark head's where the model keeps it."""
        fusions = [conv_bn("stem"), conv_bn("stem_dw"), conv_bn("expand")]
        for name in ("down1", "stage1", "down2", "stage2", "down3", "stage3"):
            module = getattr(self, name)
            units = [name] if isinstance(module, InvertedBottleneck) else [f"{name}.{i}" for i in range(len(module))]
            fusions += [conv_bn(f"{unit}.{part}") for unit in units for part in ("expand", "depthwise", "project")]
        if "head" in self._modules:  # POSTER deletes it
            fusions.append(conv_bn("head.pool"))
        return fusions


# The original network's module names (POSTER++'s ``face_landback``) -> this module's.
_MODULES = {
    "conv1": "stem", "conv2_dw": "stem_dw", "conv_23": "down1", "conv_3": "stage1",
    "conv_34": "down2", "conv_4": "stage2", "conv_45": "down3", "conv_5": "stage3",
    "conv_6_sep": "expand",
}
_BLOCK = {"conv": "expand", "conv_dw": "depthwise", "project": "project"}
_CONV = {"conv": "conv", "bn": "bn", "prelu": "act"}
_HEAD = {"conv_6_dw": "pool", "linear": "fc", "bn": "bn"}


def original_key(name: str) -> str | None:
    """A key of the original MobileFaceNet (``conv1.conv.weight``, ``conv_3.model.0.conv_dw.bn.bias``,
    ``output_layer.linear.weight``) -> the name under ``MobileFaceNet``; None for unknown keys."""
    parts = name.split(".")
    top, rest = parts[0], parts[1:]
    if top == "output_layer":
        inner = _HEAD.get(rest[0]) if rest else None
        if inner is None:
            return None
        if rest[0] == "conv_6_dw":
            return _join_conv(["head", "pool"], rest[1:])
        return ".".join(["head", inner] + rest[1:])
    if top not in _MODULES:
        return None
    out = [_MODULES[top]]
    if top in ("conv1", "conv2_dw", "conv_6_sep"):  # plain conv-bn-prelu blocks
        return _join_conv(out, rest)
    if rest and rest[0] == "model":  # a stage of residual bottlenecks
        out.append(rest[1])
        rest = rest[2:]
    if not rest or rest[0] not in _BLOCK:
        return None
    return _join_conv(out + [_BLOCK[rest[0]]], rest[1:])


def _join_conv(prefix: list[str], rest: list[str]) -> str | None:
    if not rest or rest[0] not in _CONV:
        return None
    return ".".join(prefix + [_CONV[rest[0]]] + rest[1:])


# --- The released weights -----------------------------------------------------------------------

class MobileFaceNetWeights(enum.Enum):
    """The pretrained MobileFaceNet that POSTER++ training starts its frozen landmark stream from."""

    LANDMARKS_68 = Weights(
        key="mobilefacenet",
        arch="poster-v2",  # POSTER++ training starts from it
        title="MobileFaceNet 68-point landmark backbone",
        file_name="mobilefacenet_model_best.pth.tar",
        gdrive_id="1SMYP5NDkmDE3eLlciN7Z4px-bvFEuHEX",
        kind="backbone",
    )
