"""IR-50 image backbone: the first three stages of the ArcFace "improved residual" ResNet-50.

POSTER++ uses its 56x56, 28x28 and 14x14 feature maps (for a 112x112 input); the fourth stage and
the embedding head of the face-recognition network are not part of the model.
"""
from __future__ import annotations

import enum
from collections import OrderedDict

import torch
from torch import nn

from .fusions import Fusion, conv_bn
from .weights_api import Weights


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

    def cpu_fusions(self) -> list[Fusion]:
        """The chains ``fuse_for_cpu`` folds: the stem's convolution and norm; in each unit the norm
        before the first convolution, the norm after the second, and a projection shortcut's pair."""
        fusions = [conv_bn("stem")]
        for stage in ("stage1", "stage2", "stage3"):
            for i, block in enumerate(getattr(self, stage)):
                unit = f"{stage}.{i}"
                fusions += [Fusion(f"{unit}.residual.conv1", input_norm=f"{unit}.residual.bn1"),
                            Fusion(f"{unit}.residual.conv2", norm=f"{unit}.residual.bn2")]
                if isinstance(block.shortcut, ProjectionShortcut):
                    fusions.append(conv_bn(f"{unit}.shortcut"))
        return fusions


# The original network (face.evoLVe; POSTER++'s ``ir_back``) names its layers by position.
_STEM = {"0": "conv", "1": "bn", "2": "act"}
_RESIDUAL = {"0": "bn1", "1": "conv1", "2": "act", "3": "conv2", "4": "bn2"}
_SHORTCUT = {"0": "conv", "1": "bn"}
# Stage of each unit in face.evoLVe's flat numbering ``body.0`` .. ``body.23``; stage 4 is not used here.
_FLAT_STAGE = (1,) * 3 + (2,) * 4 + (3,) * 14 + (4,) * 3
_FLAT_START = {1: 0, 2: 3, 3: 7, 4: 21}


def split_flat_key(name: str) -> str:
    """face.evoLVe's flat ``body.N.*`` -> POSTER++'s per-stage ``bodyS.U.*``; other names unchanged
    (an index past the 24 units is left as it is, for strict loading to report)."""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "body" or not parts[1].isdigit() or int(parts[1]) >= len(_FLAT_STAGE):
        return name
    index = int(parts[1])
    stage = _FLAT_STAGE[index]
    return ".".join([f"body{stage}", str(index - _FLAT_START[stage])] + parts[2:])


def original_key(name: str) -> str | None:
    """A key of the original IR-50 as POSTER++ stores it (``input_layer.*``, ``body1.0.*``) -> the
    name under ``IR50``; None for keys outside the stem and the three stages used."""
    parts = name.split(".")
    if parts[0] == "input_layer" and len(parts) > 2 and parts[1] in _STEM:
        return ".".join(["stem", _STEM[parts[1]]] + parts[2:])
    if parts[0] in ("body1", "body2", "body3") and len(parts) > 4:
        branch, index = parts[2], parts[3]
        table = {"res_layer": ("residual", _RESIDUAL), "shortcut_layer": ("shortcut", _SHORTCUT)}.get(branch)
        if table is None or index not in table[1]:
            return None
        return ".".join([f"stage{parts[0][-1]}", parts[1], table[0], table[1][index]] + parts[4:])
    return None


# --- The released weights -----------------------------------------------------------------------

class IR50Weights(enum.Enum):
    """The pretrained IR-50 that POSTER++ training starts its image stream from."""

    MS_CELEB_1M = Weights(
        key="ir50",
        arch="poster-v2",  # POSTER++ training starts from it
        title="IR-50 face recognition backbone (MS-Celeb-1M)",
        file_name="ir50.pth",
        gdrive_id="17QAIPlpZUwkQzOTNiu-gUFLTqAxS-qHt",
        kind="backbone",
        meta={"hub_repo": "KaliberAI/posterv2_ir50", "hub_file": "ir50.pth", "bytes": 122_022_895},
    )
