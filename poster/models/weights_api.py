"""What a weight file record says: the file, its sources, its classes, its published figures and the
preprocessing it was trained with.

Modelled on torchvision's ``Weights``: code asks the record (class order, published accuracy, file
name, source) instead of scattering constants. Each model module holds the enum of its own released
files (``poster_v2.PosterV2Weights``, ``ir50.IR50Weights``, ...); ``poster.weights.registry`` looks
them up. Plain dataclasses: reading a record needs no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How a face crop was turned into the network's input when the checkpoint was trained and tested.

    ``input_size`` comes from the model module (each owns its ``INPUT_SIZE``). ``colour_order`` is
    the channel order the network saw: "BGR" where the original code read images with OpenCV and
    never converted them (the normalization constants stay in RGB order).
    """

    input_size: int
    resize: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    colour_order: str = "RGB"


@dataclass(frozen=True)
class Metric:
    """One published figure and what it means."""

    value: float
    meaning: str


@dataclass(frozen=True)
class Weights:
    """One released weight file and the facts that belong to it."""

    key: str
    title: str
    file_name: str
    gdrive_id: str
    arch: str                            # the architecture the file belongs to (a backbone: whose training uses it)
    kind: str = "checkpoint"  # "checkpoint" (a whole network) or "backbone" (pretraining weights)
    class_names: tuple[str, ...] = ()
    folder_names: tuple[str, ...] = ()  # class folder names in the POSTER++ ImageFolder layout
    published_accuracy: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None           # dataset key ("raf-db") of a checkpoint
    preprocessing: Preprocessing | None = None  # of a checkpoint; None for a backbone
    sha256: str | None = None            # expected sha256 of the released file, where known
    gdrive_folder: str | None = None     # a Drive folder holding the file, when no file id is published
    published_metrics: tuple[Metric, ...] = ()
    subdir: str = ""                     # folder below the checkpoint folder (one per architecture)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def safetensors_name(self) -> str:
        return self.file_name.rsplit(".", 1)[0].removesuffix(".pth") + ".safetensors"

    @property
    def dataset_key(self) -> str | None:
        return self.dataset or (self.key if self.kind == "checkpoint" else None)

    def names(self) -> set[str]:
        """Every name the record answers to, normalized: key, title, file name (and the converted
        file's name for a checkpoint)."""
        names = {self.key, self.title, self.file_name}
        if self.kind == "checkpoint":
            names.add(self.safetensors_name)
        return {normalize_name(n) for n in names}


def normalize_name(name: str) -> str:
    """A name as lookups compare it: lower case, letters and digits only ("RAF-DB" is "rafdb")."""
    return "".join(ch for ch in name.lower() if ch.isalnum())
