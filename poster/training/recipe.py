"""The published POSTER++ training recipe per dataset, and the settings of one training run.

Values from the authors' ``main.py``: SAM (rho 0.05) around Adam, exponential decay 0.98 per epoch,
batch 144, 200 epochs, cross-entropy; resize 224, horizontal flip, normalize, random erasing;
class-balanced sampling for AffectNet. Every value can be overridden per run.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from torchvision import transforms as T

from ..errors import PosterError
from ..models.poster_v2 import POSTER_V2_PREPROCESSING
from ..weights.registry import get_weights

CONFIG_FILE = "train.json"  # a run's resolved settings, in its folder
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Recipe:
    """The published training settings for one dataset."""

    lr: float
    erase_p: float
    erase_scale: tuple[float, float]
    balanced: bool
    batch_size: int = 144
    epochs: int = 200
    gamma: float = 0.98
    rho: float = 0.05
    # main.py parses --wd 1e-4 but never hands it to the optimizer: the published runs used none.
    weight_decay: float = 0.0
    flip_p: float = 0.5


RECIPES: dict[str, Recipe] = {
    "raf-db": Recipe(lr=3.5e-5, erase_p=0.5, erase_scale=(0.02, 0.1), balanced=False),
    "affectnet-7": Recipe(lr=1e-6, erase_p=1.0, erase_scale=(0.05, 0.05), balanced=True),
    "affectnet-8": Recipe(lr=1e-6, erase_p=1.0, erase_scale=(0.05, 0.05), balanced=True),
    "caer-s": Recipe(lr=4e-5, erase_p=1.0, erase_scale=(0.05, 0.05), balanced=False),
}
RECIPE_FIELDS = tuple(f.name for f in fields(Recipe))


@dataclass
class TrainConfig:
    """Every setting of a training run; ``from_recipe`` fills what is not given from the recipe."""

    data: str
    dataset: str
    out: str
    lr: float
    erase_p: float
    erase_scale: tuple[float, float]
    balanced: bool
    batch_size: int
    epochs: int
    gamma: float
    rho: float
    weight_decay: float
    flip_p: float
    layout: str = "auto"
    test_data: str | None = None            # a separate test set (a second CSV, say); default: data's test split
    classes: tuple[str, ...] | None = None  # own class list (class folders named like the classes)
    init: str | None = None                 # a dataset checkpoint to fine-tune
    init_dataset: str | None = None         # the dataset init was trained on, where its file does not say
    ir50: str | None = "ir50"               # pretrained backbones for a fresh start; None: random
    mobilefacenet: str | None = "mobilefacenet"
    workers: int = 4
    seed: int | None = None
    precision: str = "auto"
    device: str | None = None
    eval_batch_size: int = 64
    progress: bool = True

    @classmethod
    def from_recipe(cls, dataset: str, data: str | Path, out: str | Path, **settings: Any) -> "TrainConfig":
        """The recipe of ``dataset`` with ``settings`` on top (None means: the recipe's value)."""
        if dataset not in RECIPES:
            raise PosterError(f"unknown dataset {dataset!r}; expected one of {', '.join(RECIPES)}")
        values = asdict(RECIPES[dataset])
        for name, value in settings.items():
            if name in RECIPE_FIELDS and value is None:
                continue
            values[name] = value
        config = cls(data=str(data), dataset=dataset, out=str(out), **values)
        config.validate()
        return config

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        values["erase_scale"] = tuple(values["erase_scale"])
        if values.get("classes") is not None:
            values["classes"] = tuple(values["classes"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        low, high = self.erase_scale
        problems = [
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.batch_size > 0, f"batch size must be positive, got {self.batch_size}"),
            (self.epochs > 0, f"epochs must be positive, got {self.epochs}"),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (self.rho >= 0, f"rho must be non-negative, got {self.rho}"),
            (0 <= self.erase_p <= 1 and 0 <= self.flip_p <= 1, "probabilities must be in [0, 1]"),
            (0 < low <= high < 1, f"erase scale must satisfy 0 < min <= max < 1, got {low} {high}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.workers >= 0 and self.eval_batch_size > 0, "workers >= 0 and eval batch size > 0"),
        ]
        for ok, message in problems:
            if not ok:
                raise PosterError(message)


# Settings a resumed run may change; the others define the run (and its optimizer state).
RESUME_MAY_CHANGE = ("data", "test_data", "epochs", "workers", "device", "precision", "eval_batch_size", "progress")


def resume_config(run_dir: str | Path, changes: dict[str, Any]) -> TrainConfig:
    """The settings of the run in ``run_dir`` with the allowed ``changes`` (None: unchanged)."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise PosterError(f"{run_dir} is not a training run: no {CONFIG_FILE}")
    config = TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    config.out = str(run_dir)
    kept = config.to_dict()
    for name, value in changes.items():
        if value is None or _same(value, kept.get(name)):
            continue
        if name not in RESUME_MAY_CHANGE:
            raise PosterError(f"--resume keeps the run's {name} ({kept.get(name)!r}); "
                              f"only {', '.join(RESUME_MAY_CHANGE)} can change")
        setattr(config, name, value)
    config.validate()
    return config


def _same(a: Any, b: Any) -> bool:
    # train.json stores tuples as lists.
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return list(a) == list(b)
    return a == b


# --- Classes, data ------------------------------------------------------------------------

def class_setup(config: TrainConfig) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """(class names, ImageFolder folder names, registry dataset key or None for an own class list)."""
    if config.classes:
        return tuple(config.classes), tuple(config.classes), None
    weights = get_weights(dataset=config.dataset)
    return weights.class_names, weights.folder_names, weights.key


def train_transform(config: TrainConfig) -> T.Compose:
    """The original training augmentation (random erasing works on the normalized tensor)."""
    pre = POSTER_V2_PREPROCESSING
    return T.Compose([
        T.Resize((pre.input_size, pre.input_size)),
        T.RandomHorizontalFlip(config.flip_p),
        T.ToTensor(),
        T.Normalize(mean=pre.mean, std=pre.std),
        T.RandomErasing(p=config.erase_p, scale=tuple(config.erase_scale)),
    ])
