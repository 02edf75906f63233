"""Shared pieces of the app tests: a checkpoint folder, model stores, an evaluation run, a server.

Everything is built from the recipe checkpoint (deterministic, untrained weights) and the photos
shipped with scikit-image and matplotlib; nothing is downloaded.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from poster.data import sample_faces as _data
from tests._checkpoints import checkpoint_file

RAF_CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
RAF_FOLDERS = ("1", "2", "3", "4", "5", "6", "7")
RUN_LABELS = [0, 1, 2, 3, 4, 5, 6, 3, 3, 3, 6, 6, 0, 1, 3, 6]


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a RAF-DB-named recipe checkpoint (7 classes)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    checkpoint_file(folder / "rafdb_best.pth", num_classes=7)
    return folder


@pytest.fixture(scope="session")
def architectures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder as ``python -m poster download`` lays it out: POSTER++'s RAF-DB file at
    the top, POSTER's (same file name) and ARM's in a folder each."""
    root = tmp_path_factory.mktemp("all-architectures")
    checkpoint_file(root / "rafdb_best.pth", num_classes=7)
    (root / "poster-v1").mkdir()
    checkpoint_file(root / "poster-v1" / "rafdb_best.pth", "poster-v1")
    (root / "arm").mkdir()
    checkpoint_file(root / "arm" / "epoch59_acc0.9205.pth", "arm")
    return root


@pytest.fixture(scope="session")
def app_store(checkpoint_dir: Path):
    """One CPU model store for the session, finding checkpoints in ``checkpoint_dir`` only."""
    from demo.serving.store import ModelStore

    torch.manual_seed(0)
    return ModelStore(device="cpu", checkpoint_dirs=[checkpoint_dir])


@pytest.fixture
def empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A store that finds no checkpoint anywhere (and has no Hub repository)."""
    from demo.serving.store import ModelStore
    from poster.weights import locate

    monkeypatch.delenv(locate.ENV_HUB_REPO, raising=False)
    monkeypatch.delenv(locate.ENV_CHECKPOINT, raising=False)
    monkeypatch.setattr(locate, "search_dirs", lambda extra=None: [Path(d) for d in (extra or [])])
    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    return ModelStore(device="cpu", checkpoint_dirs=[empty])


def astronaut_path() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent / "astronaut.png"


def write_run(root: Path, name: str = "raf-db-test", labels: list[int] = RUN_LABELS,
              sha256: str = "", with_dataset: bool = True) -> Path:
    """An evaluation run like `python -m poster evaluate --thumbnails` writes, without running a model.

    Logits are deterministic; the images are real face crops (tests/_data), with thumbnails.
    """
    from data_explorer.runs import THUMBNAILS
    from poster.data.datasets import thumbnail_name
    from poster.evaluation.run import predictions_table, write_run as write_run_files

    dataset = root.parent / f"{name}-dataset"
    items = _data.write_imagefolder(dataset, labels, RAF_FOLDERS)
    rng = np.random.RandomState(7)
    logits = torch.from_numpy(rng.standard_normal((len(items), len(RAF_CLASSES))) * 2)
    table = predictions_table(logits, [label for _, label in items], [path for path, _ in items], RAF_CLASSES)
    run_dir = root / name
    for relative, _ in items:
        thumb = run_dir / THUMBNAILS / thumbnail_name(relative)
        thumb.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(dataset / relative) as im:
            im.convert("RGB").resize((96, 96)).save(thumb, "JPEG")
    summary = {
        "checkpoint": "raf-db", "checkpoint_dataset": "raf-db", "checkpoint_sha256": sha256,
        "dataset_root": str(dataset.resolve()) if with_dataset else str(root / "gone"),
        "split": "test", "class_names": list(RAF_CLASSES), "num_images": len(table),
        "accuracy": 100 * float(table["correct"].mean()), "published_accuracy": 92.21,
        "date": "2026-01-01T00:00:00+00:00", "num_skipped": 0, "skipped": [], "thumbnails": True,
    }
    write_run_files(run_dir, table, summary)
    return run_dir


@contextmanager
def served(store, runs_root: Path | None = None) -> Iterator[str]:
    """The app on 127.0.0.1 (a free port) for the duration of the block, its runs in ``runs_root``; yields its URL."""
    import os

    from demo import served_on_loopback
    from demo.serving.limits import ENV_RUNS_DIR

    old = os.environ.get(ENV_RUNS_DIR)
    if runs_root is not None:
        os.environ[ENV_RUNS_DIR] = str(runs_root)
    try:
        with served_on_loopback(store) as url:
            yield url
    finally:
        if runs_root is not None:
            if old is None:
                os.environ.pop(ENV_RUNS_DIR, None)
            else:
                os.environ[ENV_RUNS_DIR] = old
