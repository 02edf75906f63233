"""ARM (Shi and Zhu 2021, arXiv 2103.10189): ResNet-18 with the Amend Representation Module.

ResNet-18's 512x7x7 map is rearranged by ``PixelShuffle(16)`` into 2x112x112; one 32x32, stride-8
"de-albino" kernel, shared by both channels, turns each into 11x11; after batch norm the channel
mean, plus ``alpha`` times the mean over the whole batch, is the 121-value representation that a
linear layer classifies.

The batch term makes a face's logits depend on the other images of its batch, in eval mode too.
``forward`` reproduces that exactly (the published accuracy was measured in batches of 64);
``forward_alone`` gives every face the logits it gets in a batch of one, in one pass.
"""
from __future__ import annotations

import enum

import torch
from torch import nn

from .fusions import Fusion, under
from .dataset_facts import RAF_DB_CLASS_NAMES, RAF_DB_FOLDER_NAMES, raf_db_meta
from .outputs import GradCamLayer, ModelOutput, NamedMap
from .renaming import map_state_dict
from .weights_api import Metric, Preprocessing, Weights

INPUT_SIZE = 224
SHUFFLE = 16
KERNEL, STRIDE = 32, 8
GRID = (7 * SHUFFLE - KERNEL) // STRIDE + 1  # 11
HEAD_WEIGHT = "fc.weight"
_STAGES = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


class ResNet18Trunk(nn.Module):
    """torchvision's ResNet-18 up to its last 512x7x7 map (no pooling, no classifier), under its own names."""

    def __init__(self) -> None:
        super().__init__()
        # Imported here: torchvision's models package takes seconds to import, and the registry reads
        # this module (its weights enum) whenever poster is imported.
        from torchvision.models.resnet import BasicBlock, ResNet

        resnet = ResNet(BasicBlock, [2, 2, 2, 2])
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def cpu_fusions(self) -> list[Fusion]:
        """The chains ``fuse_for_cpu`` folds: each convolution with its batch norm, the stem's ReLU
        (a block's ReLU is called twice, so it stays its own)."""
        fusions = [Fusion("conv1", "bn1", "relu")]
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            for i, block in enumerate(getattr(self, stage)):
                unit = f"{stage}.{i}"
                fusions += [Fusion(f"{unit}.conv1", f"{unit}.bn1"), Fusion(f"{unit}.conv2", f"{unit}.bn2")]
                if block.downsample is not None:
                    fusions.append(Fusion(f"{unit}.downsample.0", f"{unit}.downsample.1"))
        return fusions


class AmendModule(nn.Module):
    """De-albino convolution per channel, batch norm, channel mean plus ``alpha`` x the batch mean."""

    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        self.de_albino = nn.Conv2d(1, 1, KERNEL, STRIDE, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.alpha = nn.Parameter(torch.ones(1))

    def de_albino_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 112, 112) -> (B, C, 11, 11): the one kernel over each channel, then batch norm."""
        b, c, h, w = x.shape
        return self.bn(self.de_albino(x.reshape(b * c, 1, h, w)).reshape(b, c, GRID, GRID))

    def forward(self, x: torch.Tensor, alone: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(amended (B, 1, 11, 11), each face's own channel mean (B, 1, 11, 11))."""
        own = self.de_albino_maps(x).mean(dim=1, keepdim=True)
        # The mean over batch and channels: over a batch of one it is the face's own mean.
        shared = own if alone else own.mean(dim=0, keepdim=True)
        return own + self.alpha * shared, own


class ARM(nn.Module):
    """ResNet-18 + ARM for 224x224 normalized RGB face crops."""

    arch = "arm"
    head_keys = ("fc.weight", "fc.bias")
    faces_interact = True  # forward mixes the batch; forward_alone does not

    def __init__(self, num_classes: int = 7) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = ResNet18Trunk()
        self.arrangement = nn.PixelShuffle(SHUFFLE)
        self.arm = AmendModule()
        self.fc = nn.Linear(GRID * GRID, num_classes)

    @property
    def dtype(self) -> torch.dtype:
        return self.fc.weight.dtype

    def frozen_modules(self) -> list[nn.Module]:
        return []

    def optional_modules(self) -> list[nn.Module]:
        return []

    def gradcam_layers(self) -> list[GradCamLayer]:
        """The ResNet-18 stages (grids at a 224 input)."""
        b = self.backbone
        return [GradCamLayer(f"ResNet-18 layer {i}", layer, (s, s))
                for i, (layer, s) in enumerate(((b.layer1, 56), (b.layer2, 28), (b.layer3, 14), (b.layer4, 7)), 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Published behaviour: every face's logits include the mean over this batch."""
        return self._forward(x, alone=False)[0]

    def forward_alone(self, x: torch.Tensor) -> torch.Tensor:
        """Each face's logits as in a batch of its own."""
        return self._forward(x, alone=True)[0]

    def forward_intermediates(self, x: torch.Tensor, alone: bool = True) -> ModelOutput:
        """Logits (each face alone unless ``alone=False``), the ResNet map and the 11x11 maps."""
        logits, trunk, amended, own = self._forward(x, alone)
        return ModelOutput(logits=logits, feature=amended.flatten(1), features=[
            NamedMap("ResNet-18 layer 4", trunk, (7, 7), "the last 512x7x7 ResNet-18 map"),
            NamedMap("de-albino map", own, (GRID, GRID),
                     "the face's own 11x11 de-albino map (channel mean after batch norm); 32x32 windows "
                     "of the pixel-shuffled 7x7 map, so a cell covers about 2x2 of the 7x7 positions"),
            NamedMap("amended map", amended, (GRID, GRID),
                     "what the classifier reads: the de-albino map plus alpha x the batch mean"),
        ])

    def _forward(self, x: torch.Tensor, alone: bool):
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"ARM expects a (B, 3, {INPUT_SIZE}, {INPUT_SIZE}) batch, got {tuple(x.shape)}")
        trunk = self.backbone(x.to(self.dtype))
        amended, own = self.arm(self.arrangement(trunk), alone)
        return self.fc(amended.flatten(1)), trunk, amended, own

    def cpu_fusions(self) -> list[Fusion]:
        """The chains ``fuse_for_cpu`` folds: the ResNet-18 trunk's (the amend module has none)."""
        return under("backbone", self.backbone.cpu_fusions())


def recognizes(keys: set[str]) -> bool:
    """True for the key set of a released ARM file."""
    return "arm.de_albino.weight" in keys


def rename_key(name: str) -> str | None:
    """Original ARM name -> project name (None for names this mapping does not know)."""
    parts = name.split(".")
    if parts[0] == "features" and len(parts) > 2 and parts[1] in _STAGES:
        return ".".join(["backbone", _STAGES[parts[1]]] + parts[2:])
    if parts[0] in ("arm", "fc"):
        return name
    return None


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Original state dict -> (project state dict, dropped keys). Every released key is used."""
    return map_state_dict(state_dict, rename_key)


def arm(num_classes: int = 7) -> ARM:
    """A freshly initialised ResNet-18 + ARM (the registry's builder for "arm")."""
    return ARM(num_classes)


# --- The released weights -----------------------------------------------------------------------

ARM_PREPROCESSING = Preprocessing(input_size=INPUT_SIZE)


class ARMWeights(enum.Enum):
    """The released ARM checkpoint (Shi and Zhu 2021)."""

    RAF_DB = Weights(
        key="arm-raf-db",
        title="ARM RAF-DB",
        file_name="epoch59_acc0.9205.pth",
        gdrive_id="1v5j0WUxOMeDXOFBVIJaDSnGdYef3KSxO",
        arch="arm",
        dataset="raf-db",
        preprocessing=ARM_PREPROCESSING,
        class_names=RAF_DB_CLASS_NAMES,
        folder_names=RAF_DB_FOLDER_NAMES,
        published_accuracy=92.05,
        published_metrics=(
            Metric(92.05, "accuracy of this checkpoint (its file name), RAF-DB test set in batches of 64 "
                          "in label-file order: ARM adds a mean over the batch, so the figure depends on it"),
            Metric(90.42, "RAF-DB accuracy the paper and the repository's README report now"),
        ),
        subdir="arm",
        meta=raf_db_meta(linked="from the repository's README, June to October 2021"),
    )
