"""Every released weight file of POSTER++, POSTER and ARM, and the pretrained backbones, as records."""
from __future__ import annotations

import enum

from ..models import arm, poster_v1, poster_v2
from .records import Metric, Preprocessing, Weights, normalize_name

POSTER_V2_PREPROCESSING = Preprocessing(input_size=poster_v2.INPUT_SIZE)
# The original test script reads images with OpenCV and never converts them to RGB.
POSTER_V1_PREPROCESSING = Preprocessing(input_size=poster_v1.INPUT_SIZE, colour_order="BGR")
ARM_PREPROCESSING = Preprocessing(input_size=arm.INPUT_SIZE)


class PosterV2Weights(enum.Enum):
    """The four dataset checkpoints of POSTER++ (Mao et al., 2023)."""

    RAF_DB = Weights(
        key="raf-db",
        dataset="raf-db",
        preprocessing=POSTER_V2_PREPROCESSING,
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
        preprocessing=POSTER_V2_PREPROCESSING,
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
        preprocessing=POSTER_V2_PREPROCESSING,
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
        preprocessing=POSTER_V2_PREPROCESSING,
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
        wanted = normalize_name(name)
        for member in cls:
            if wanted == normalize_name(member.name) or wanted in member.value.names():
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
        preprocessing=POSTER_V1_PREPROCESSING,
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
        preprocessing=ARM_PREPROCESSING,
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
