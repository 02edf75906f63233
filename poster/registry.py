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


@dataclass(frozen=True)
class Weights:
    """One released weight file and the facts that belong to it."""

    key: str
    title: str
    file_name: str
    gdrive_id: str
    kind: str = "checkpoint"  # "checkpoint" (full POSTER++) or "backbone" (pretraining weights)
    class_names: tuple[str, ...] = ()
    folder_names: tuple[str, ...] = ()  # class folder names in the POSTER++ ImageFolder layout
    published_accuracy: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def safetensors_name(self) -> str:
        return self.file_name.rsplit(".", 1)[0].removesuffix(".pth") + ".safetensors"


class PosterV2Weights(enum.Enum):
    """The four dataset checkpoints of POSTER++ (Mao et al., 2023)."""

    RAF_DB = Weights(
        key="raf-db",
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


def _normalize(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def all_weights() -> list[Weights]:
    """Every registered weight file, dataset checkpoints first."""
    return [m.value for m in PosterV2Weights] + [m.value for m in BackboneWeights]


def find_weights(name: str) -> Weights:
    """Any registered weight file by key, title or file name."""
    try:
        return PosterV2Weights.get(name).value
    except KeyError:
        wanted = _normalize(name)
        for member in BackboneWeights:
            w = member.value
            if wanted in {_normalize(w.key), _normalize(member.name), _normalize(w.file_name)}:
                return w
        known = ", ".join(w.key for w in all_weights())
        raise KeyError(f"unknown weight file {name!r}; known: {known}") from None
