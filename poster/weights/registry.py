"""The architectures and their released weight files: names to model builders, lookups of records.

In the manner of timm's and torchvision's registries: each model module defines its builder
(``poster_v2.poster_v2(num_classes)``) and the enum of its own released files; this table gathers
them. ``create_model(arch, num_classes=...)`` builds a model, ``get_weights`` finds one weight
record and ``list_weights`` lists them.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..models import arm, poster_v1, poster_v2
from ..models.arm import ARMWeights
from ..models.ir50 import IR50Weights
from ..models.mobilefacenet import MobileFaceNetWeights
from ..models.poster_v1 import PosterV1Weights
from ..models.poster_v2 import PosterV2Weights
from ..models.weights_api import Weights, normalize_name

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
    """One network family: its builder, the module holding its model and checkpoint_filter_fn, its
    released weights and the facts a model card shows."""

    name: str
    title: str
    paper: str
    module: str          # the module under poster.models holding the model and its checkpoint_filter_fn
    builder: Callable[[int], nn.Module]
    weights: type[enum.Enum]
    facts: dict[str, Any] = field(default_factory=dict)


ARCHITECTURES: dict[str, Architecture] = {
    "poster-v2": Architecture(
        "poster-v2", "POSTER++", "Mao et al., POSTER++: A simpler and stronger facial expression recognition "
        "network, arXiv 2301.12149", "poster.models.poster_v2", poster_v2.poster_v2, PosterV2Weights,
        {"parameters_used": 43_753_941, "colour_order": "RGB"}),
    "poster-v1": Architecture(
        "poster-v1", "POSTER", "Zheng et al., POSTER: A Pyramid Cross-Fusion Transformer Network for Facial "
        "Expression Recognition, arXiv 2204.04083", "poster.models.poster_v1", poster_v1.poster_v1, PosterV1Weights,
        {"parameters_stored": 71_850_399, "parameters_used": 58_906_255, "multiply_adds": 7.86e9,
         "colour_order": "BGR",
         "published": {"raf-db": 92.05, "ferplus": 91.62, "affectnet-7": 67.31, "affectnet-8": 63.34}}),
    "arm": Architecture(
        "arm", "ARM", "Shi and Zhu, Learning to Amend Facial Expression Representation via De-albino and "
        "Affinity, arXiv 2103.10189", "poster.models.arm", arm.arm, ARMWeights,
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


def create_model(arch: str, num_classes: int = 7) -> nn.Module:
    """A freshly initialised model of ``arch`` (the timm-style builder behind every loader)."""
    return architecture(arch).builder(num_classes)


def create_model_with_state(arch: str, state: dict[str, torch.Tensor], num_classes: int = 7,
                            dtype: torch.dtype = torch.float32) -> nn.Module:
    """A model of ``arch`` in ``dtype`` holding ``state`` (loaded strictly), on the CPU, built without
    the random initialisation the weights replace (``build_with_state``)."""
    return build_with_state(lambda: create_model(arch, num_classes), state, dtype)


def build_with_state(build: Callable[[], nn.Module], state: dict[str, torch.Tensor],
                     dtype: torch.dtype = torch.float32) -> nn.Module:
    """``build()`` in ``dtype`` holding ``state`` (loaded strictly), on the CPU.

    Built on the meta device and given uninitialised memory before ``state`` is copied in: a random
    initialisation costs as much as reading the weights. Buffers a state dict does not carry are
    remade by their modules' ``init_non_persistent_buffers()`` (as in timm); a module that keeps one
    without that method is a ``TypeError``.
    """
    with torch.device("meta"):
        model = build().to(dtype)
    saved = set(model.state_dict())
    remakers = {name: module for name, module in model.named_modules()
                if callable(getattr(module, "init_non_persistent_buffers", None))}
    forgotten = [name for name, _ in model.named_buffers()
                 if name not in saved and name.rpartition(".")[0] not in remakers]
    if forgotten:
        raise TypeError(f"{type(model).__name__} keeps buffers outside its state dict that no "
                        f"init_non_persistent_buffers() remakes: {', '.join(forgotten)}")
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    for module in remakers.values():
        module.init_non_persistent_buffers()
    return model


DEFAULT_ARCH = "poster-v2"  # the architecture of files that do not say theirs (written before others existed)
DATASET_KEYS = tuple(m.value.key for m in PosterV2Weights)


def list_weights(arch: str | None = None, *, kind: str | None = "checkpoint") -> list[Weights]:
    """Registered weight records in registry order (POSTER++'s first, pretrained backbones last).

    ``kind``: "checkpoint" (dataset checkpoints, the default), "backbone", or None for every file;
    ``arch``: only that architecture's checkpoints.
    """
    names = [architecture(arch).name] if arch else list(ARCHITECTURES)
    records = [m.value for name in names for m in ARCHITECTURES[name].weights]
    if arch is None:
        records += [m.value for weights in BACKBONE_WEIGHTS for m in weights]
    return [w for w in records if kind is None or w.kind == kind]


def get_weights(name: str | None = None, *, arch: str | None = None, dataset: str | None = None) -> Weights:
    """One weight record, the first match in ``list_weights`` order.

    By ``name`` (key, title or file name of any registered file: "raf-db", "poster-v1-raf-db",
    "ir50.pth"; where names collide POSTER++'s first), or by ``arch`` and/or ``dataset`` (names
    compared without case or punctuation: "RAF-DB", "affectnet8"): ``dataset="raf-db"`` gives
    POSTER++'s RAF-DB checkpoint, ``arch="arm"`` ARM's first. Raises KeyError naming the known ones.
    """
    if name is not None:
        if arch is not None or dataset is not None:
            raise TypeError("look weights up by name, or by arch and dataset, not both")
        wanted = normalize_name(name)
        for w in list_weights(kind=None):
            if wanted in w.names():
                return w
        raise KeyError(f"unknown weight file {name!r}; known: {', '.join(w.key for w in list_weights(kind=None))}")
    if arch is None and dataset is None:
        raise TypeError("get_weights needs a name, an arch or a dataset")
    candidates = list_weights(arch)
    if dataset is None:
        return candidates[0]
    wanted = normalize_name(dataset)
    for w in candidates:
        if normalize_name(w.dataset_key or "") == wanted:
            return w
    if not any(normalize_name(key) == wanted for key in DATASET_KEYS):
        raise KeyError(f"unknown dataset {dataset!r}; known: {', '.join(DATASET_KEYS)}")
    raise KeyError(f"no released {architecture(arch).title} checkpoint for {dataset!r}; "
                   f"there are: {', '.join(w.key for w in candidates)}")
