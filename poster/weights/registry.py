"""The architectures and their released weight files: names to model builders, lookups of records.

In the manner of timm's and torchvision's registries: ``create_model(arch, num_classes=...)`` builds a
model, ``list_weights()`` lists the released checkpoints. Each model module holds the weights enum of
its own released files; this table gathers them.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ..models.arm import ARMWeights
from ..models.ir50 import IR50Weights
from ..models.mobilefacenet import MobileFaceNetWeights
from ..models.poster_v1 import PosterV1Weights
from ..models.poster_v2 import PosterV2Weights
from ..models.weights_api import Preprocessing, Weights, normalize_name

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

# The pretrained backbones that training starts from, beside the backbone modules they belong to.
BACKBONE_WEIGHTS: tuple[type[enum.Enum], ...] = (IR50Weights, MobileFaceNetWeights)


def architecture(name: str) -> Architecture:
    """An architecture by name ("poster-v2", "poster-v1", "arm"; "posterv1", "POSTER" work too)."""
    wanted = normalize_name(name)
    for arch in ARCHITECTURES.values():
        if wanted in {normalize_name(arch.name), normalize_name(arch.title)}:
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


def default_preprocessing(arch: str) -> Preprocessing:
    """How ``arch``'s released checkpoints were fed (what a file of that architecture that records
    nothing else is given)."""
    return list_weights(arch)[architecture(arch).name][0].preprocessing


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


def all_weights() -> list[Weights]:
    """Every registered weight file, dataset checkpoints first."""
    return checkpoint_weights() + [m.value for weights in BACKBONE_WEIGHTS for m in weights]


def find_weights(name: str) -> Weights:
    """Any registered weight file by key, title or file name (POSTER++ first where names collide)."""
    wanted = normalize_name(name)
    # Enum names ("RAF_DB") only for POSTER++: POSTER's and ARM's are the same words.
    member_name = {id(m.value): normalize_name(m.name) for m in PosterV2Weights}
    for w in all_weights():
        if wanted in w.names() or wanted == member_name.get(id(w)):
            return w
    known = ", ".join(w.key for w in all_weights())
    raise KeyError(f"unknown weight file {name!r}; known: {known}")
