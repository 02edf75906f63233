"""Every released POSTER++ weight file as one record: where it comes from and what it means.

Modelled on torchvision's weights enums: code asks the record (class order, published accuracy,
file name, source) instead of scattering constants.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

# Canonical names used to line up classes across datasets ("Happy" in CAER-S is "Happiness").
CANONICAL_CLASS = {
    "Happy": "Happiness",
    "Sad": "Sadness",
    "Angry": "Anger",
}


def canonical_class(name: str) -> str:
    """The name under which a class is compared across datasets."""
    return CANONICAL_CLASS.get(name, name)


INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How a face crop was turned into the network's input when the checkpoint was trained and tested.

    ``colour_order`` is the channel order the network saw: "BGR" where the original code read
    images with OpenCV and never converted them (the normalization constants stay in RGB order).
    """

    input_size: int = INPUT_SIZE
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
    kind: str = "checkpoint"  # "checkpoint" (a whole network) or "backbone" (pretraining weights)
    class_names: tuple[str, ...] = ()
    folder_names: tuple[str, ...] = ()  # class folder names in the POSTER++ ImageFolder layout
    published_accuracy: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    arch: str = "poster-v2"
    dataset: str | None = None           # dataset key ("raf-db") of a checkpoint
    preprocessing: Preprocessing = Preprocessing()
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


class PosterV2Weights(enum.Enum):
    """The four dataset checkpoints of POSTER++ (Mao et al., 2023)."""

    RAF_DB = Weights(
        key="raf-db",
        dataset="raf-db",
        title="RAF-DB",
        file_name="rafdb_best.pth",
        gdrive_id="1aVm_hmJyZ5E_0p25XTbm3X9ophsKqCxv",
        class_names=("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"),
        folder_names=("1", "2", "3", "4", "5", "6", "7"),
        published_accuracy=92.21,
        meta={"images": "RAF-DB basic, aligned 100x100 faces", "test_images": 3068},
    )
    AFFECTNET_7 = Weights(
        key="affectnet-7",
        dataset="affectnet-7",
        title="AffectNet-7",
        file_name="affectnet7_best.pth",
        gdrive_id="1c_gp5UdlcMjIB2dZtdhXFfHOQg1OqU-D",
        class_names=("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger"),
        folder_names=("0", "1", "2", "3", "4", "5", "6"),
        published_accuracy=67.49,
        meta={"images": "AffectNet manually annotated faces, 7 basic expressions", "test_images": 3500},
    )
    AFFECTNET_8 = Weights(
        key="affectnet-8",
        dataset="affectnet-8",
        title="AffectNet-8",
        file_name="affectnet8_best.pth",
        gdrive_id="1tdYH12vgWnIWfupuBkP3jmWS0pJtDxvh",
        class_names=("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger",
                     "Contempt"),
        folder_names=("0", "1", "2", "3", "4", "5", "6", "7"),
        published_accuracy=63.77,
        meta={"images": "AffectNet manually annotated faces, 8 expressions", "test_images": 4000},
    )
    CAER_S = Weights(
        key="caer-s",
        dataset="caer-s",
        title="CAER-S",
        file_name="caers_best.pth",
        gdrive_id="1Q7RDJxVPTkDH2rlhiAiOpSbIo1wUOqPv",
        class_names=("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"),
        folder_names=("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"),
        published_accuracy=93.00,
        meta={"images": "CAER-S video frames of TV shows", "test_images": 20913},
    )

    @classmethod
    def get(cls, name: str) -> "PosterV2Weights":
        """Look a checkpoint up by key ("raf-db"), enum name ("RAF_DB") or title ("RAF-DB")."""
        wanted = _normalize(name)
        for member in cls:
            w = member.value
            if wanted in {_normalize(w.key), _normalize(member.name), _normalize(w.title),
                          _normalize(w.file_name), _normalize(w.safetensors_name)}:
                return member
        known = ", ".join(m.value.key for m in cls)
        raise KeyError(f"unknown dataset checkpoint {name!r}; known: {known}")


class BackboneWeights(enum.Enum):
    """Pretrained backbones that POSTER++ training starts from."""

    IR50 = Weights(
        key="ir50",
        title="IR-50 face recognition backbone (MS-Celeb-1M)",
        file_name="ir50.pth",
        gdrive_id="17QAIPlpZUwkQzOTNiu-gUFLTqAxS-qHt",
        kind="backbone",
        meta={"hub_repo": "KaliberAI/posterv2_ir50", "hub_file": "ir50.pth", "bytes": 122_022_895},
    )
    MOBILEFACENET = Weights(
        key="mobilefacenet",
        title="MobileFaceNet 68-point landmark backbone",
        file_name="mobilefacenet_model_best.pth.tar",
        gdrive_id="1SMYP5NDkmDE3eLlciN7Z4px-bvFEuHEX",
        kind="backbone",
    )


_RAF_DB = PosterV2Weights.RAF_DB.value


class PosterV1Weights(enum.Enum):
    """The released POSTER checkpoint (Zheng et al. 2022); only RAF-DB was published."""

    RAF_DB = Weights(
        key="poster-v1-raf-db",
        title="POSTER RAF-DB",
        file_name="rafdb_best.pth",
        gdrive_id="",
        gdrive_folder="1jeCPTGjBL8YgKKB9YrI9TYZywme8gymv",
        arch="poster-v1",
        dataset="raf-db",
        class_names=_RAF_DB.class_names,
        folder_names=_RAF_DB.folder_names,
        published_accuracy=92.05,
        published_metrics=(Metric(92.05, "RAF-DB test accuracy reported in the paper"),),
        # The original test script reads images with OpenCV and never converts them to RGB.
        preprocessing=Preprocessing(colour_order="BGR"),
        subdir="poster-v1",
        meta={"images": "RAF-DB basic, aligned 100x100 faces", "test_images": 3068},
    )


class ARMWeights(enum.Enum):
    """The released ARM checkpoint (Shi and Zhu 2021)."""

    RAF_DB = Weights(
        key="arm-raf-db",
        title="ARM RAF-DB",
        file_name="epoch59_acc0.9205.pth",
        gdrive_id="1v5j0WUxOMeDXOFBVIJaDSnGdYef3KSxO",
        arch="arm",
        dataset="raf-db",
        class_names=_RAF_DB.class_names,
        folder_names=_RAF_DB.folder_names,
        published_accuracy=92.05,
        published_metrics=(
            Metric(92.05, "accuracy of this checkpoint (its file name), RAF-DB test set in batches of 64 "
                          "in label-file order: ARM adds a mean over the batch, so the figure depends on it"),
            Metric(90.42, "RAF-DB accuracy the paper and the repository's README report now"),
        ),
        subdir="arm",
        meta={"images": "RAF-DB basic, aligned 100x100 faces", "test_images": 3068,
              "linked": "from the repository's README, June to October 2021"},
    )


@dataclass(frozen=True)
class Architecture:
    """One network family: where its model lives and the facts a model card shows."""

    name: str
    title: str
    paper: str
    module: str          # the module under poster.models holding the model and its checkpoint_filter_fn
    model_class: str
    weights: type[enum.Enum]
    facts: dict[str, Any] = field(default_factory=dict)


ARCHITECTURES: dict[str, Architecture] = {
    "poster-v2": Architecture(
        "poster-v2", "POSTER++", "Mao et al., POSTER++: A simpler and stronger facial expression recognition "
        "network, arXiv 2301.12149", "poster.models.poster_v2", "PosterV2", PosterV2Weights,
        {"parameters_used": 43_753_941, "colour_order": "RGB"}),
    "poster-v1": Architecture(
        "poster-v1", "POSTER", "Zheng et al., POSTER: A Pyramid Cross-Fusion Transformer Network for Facial "
        "Expression Recognition, arXiv 2204.04083", "poster.models.poster_v1", "PosterV1", PosterV1Weights,
        {"parameters_stored": 71_850_399, "parameters_used": 58_906_255, "multiply_adds": 7.86e9,
         "colour_order": "BGR",
         "published": {"raf-db": 92.05, "ferplus": 91.62, "affectnet-7": 67.31, "affectnet-8": 63.34}}),
    "arm": Architecture(
        "arm", "ARM", "Shi and Zhu, Learning to Amend Facial Expression Representation via De-albino and "
        "Affinity, arXiv 2103.10189", "poster.models.arm", "ARM", ARMWeights,
        {"parameters_used": 11_178_395, "multiply_adds": 1.81e9, "colour_order": "RGB",
         "batch_caveat": "adds alpha times the mean over the whole batch to every face, so a face's scores "
                         "depend on the other images of its batch; this project classifies each face alone"}),
}


def architecture(name: str) -> Architecture:
    """An architecture by name ("poster-v2", "poster-v1", "arm"; "posterv1", "POSTER" work too)."""
    wanted = _normalize(name)
    for arch in ARCHITECTURES.values():
        if wanted in {_normalize(arch.name), _normalize(arch.title)}:
            return arch
    raise KeyError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")


def create_model(arch: str, num_classes: int = 7, **kwargs: Any) -> Any:
    """A freshly initialised model of ``arch`` (the timm-style builder behind every loader)."""
    import importlib

    spec = architecture(arch)
    return getattr(importlib.import_module(spec.module), spec.model_class)(num_classes, **kwargs)


def list_weights(arch: str | None = None) -> dict[str, list[Weights]]:
    """Every released dataset checkpoint, grouped by architecture (POSTER++ first)."""
    names = [architecture(arch).name] if arch else list(ARCHITECTURES)
    return {name: [m.value for m in ARCHITECTURES[name].weights] for name in names}


def checkpoint_weights() -> list[Weights]:
    """Every dataset checkpoint of every architecture, in ``list_weights`` order."""
    return [w for group in list_weights().values() for w in group]


def weights_for(arch: str, dataset: str) -> Weights | None:
    """The released checkpoint of ``arch`` trained on ``dataset``, if there is one."""
    return next((w for w in list_weights(arch)[architecture(arch).name] if w.dataset_key == dataset), None)


def dataset_weights(dataset: str) -> Weights:
    """Class names and folder names of a dataset, by name ("raf-db", "RAF-DB", "affectnet8")."""
    try:
        return PosterV2Weights.get(dataset).value
    except KeyError:
        raise KeyError(f"unknown dataset {dataset!r}; known: {', '.join(DATASET_KEYS)}") from None


DATASET_KEYS = tuple(m.value.key for m in PosterV2Weights)


def _normalize(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def all_weights() -> list[Weights]:
    """Every registered weight file, dataset checkpoints first."""
    return checkpoint_weights() + [m.value for m in BackboneWeights]


def find_weights(name: str) -> Weights:
    """Any registered weight file by key, title or file name (POSTER++ first where names collide)."""
    wanted = _normalize(name)
    for w in all_weights():
        names = {_normalize(w.key), _normalize(w.title), _normalize(w.file_name)}
        if w.kind == "checkpoint":
            names.add(_normalize(w.safetensors_name))
            if w.arch == "poster-v2":
                names |= {_normalize(m.name) for m in PosterV2Weights if m.value is w}
        else:
            names |= {_normalize(m.name) for m in BackboneWeights if m.value is w}
        if wanted in names:
            return w
    known = ", ".join(w.key for w in all_weights())
    raise KeyError(f"unknown weight file {name!r}; known: {known}")
