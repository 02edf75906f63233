"""Shared pytest fixtures. Keep each group together under its heading."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

# Building a compiled package takes both cores for a minute; only the tests of packages
# (test_accelerate.py) build one, so the app's stores here never start a build process (off is
# also the default; this keeps it off whatever the developer's environment says).
os.environ["POSTER_ACCELERATE"] = "0"

# tests/run.sh and the fast subset run two pytest-xdist workers, one per core: each computes on one
# thread (set before torch is imported), or two workers of two threads each fight over two cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _app_files_removed_at_the_end() -> Iterator[None]:
    """The app's own temporary folders (written images, uploads) go when the session ends, as they
    go when the app exits."""
    yield
    files = sys.modules.get("demo.serving.files")
    if files is not None:
        files.remove_temporary_files()


@pytest.fixture(scope="module", autouse=True)
def _memory_returned_after_each_file() -> Iterator[None]:
    """A file's models, apps and servers go when it ends; glibc keeps the freed memory for the
    process unless asked to give it back, and a worker then holds every file's peak at once."""
    yield
    import gc

    gc.collect()
    if sys.platform.startswith("linux"):
        import ctypes
        import ctypes.util

        libc = ctypes.util.find_library("c")
        if libc:
            try:
                ctypes.CDLL(libc).malloc_trim(0)
            except (OSError, AttributeError):  # not glibc
                pass


# --- Real photos shipped inside installed packages (offline) --------------------------------

def _frozen(array: np.ndarray) -> np.ndarray:
    """Session fixtures are shared: make them read-only so no test can change them for others."""
    array = np.array(array, dtype=np.uint8, order="C")
    array.flags.writeable = False
    return array


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """skimage's astronaut: 512x512 RGB, one face near box (181, 62, 268, 172)."""
    from skimage import data

    return _frozen(data.astronaut())


@pytest.fixture(scope="session")
def grace_hopper_path() -> Path:
    """matplotlib's sample photo grace_hopper.jpg (512 wide, 600 high, one face)."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="session")
def grace_hopper(grace_hopper_path: Path) -> np.ndarray:
    with Image.open(grace_hopper_path) as image:
        return _frozen(np.asarray(image.convert("RGB")))


@pytest.fixture
def photo_path(tmp_path: Path, astronaut: np.ndarray) -> Path:
    """The astronaut saved as a JPEG file in a fresh temporary folder."""
    path = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut).save(path, quality=95)
    return path


@pytest.fixture(scope="session")
def face_detector():
    """One MTCNN detector with default settings for the whole session (weights ship in the package)."""
    from poster.inference.faces import FaceDetector

    return FaceDetector()


# --- POSTER++ checkpoints with the deterministic weights of poster.weights.deterministic (nothing trained here) ---

@pytest.fixture(scope="session", autouse=True)
def _checkpoint_originals(tmp_path_factory) -> None:
    """Each deterministic checkpoint is written once, here, and linked into the tests' folders."""
    from tests._checkpoints import keep_originals_in

    keep_originals_in(tmp_path_factory.mktemp("deterministic-checkpoints"))


@pytest.fixture(scope="session")
def deterministic_checkpoint(tmp_path_factory) -> Path:
    """A released-style RAF-DB checkpoint file (float32, 7 classes, recorder objects inside)."""
    from tests._checkpoints import checkpoint_file

    return checkpoint_file(tmp_path_factory.mktemp("ckpt") / "rafdb_best.pth")


@pytest.fixture(scope="session")
def deterministic_model(deterministic_checkpoint: Path):
    """The deterministic checkpoint loaded once, float32 on the CPU, in eval mode."""
    from poster import load_checkpoint

    return load_checkpoint(deterministic_checkpoint)


@pytest.fixture(scope="session")
def poster_v1_model(tmp_path_factory):
    """POSTER's deterministic checkpoint loaded once (float32, eval mode) for the tests that only read
    it (4 s to load on two cores; a test that changes a model loads its own)."""
    from poster import load_checkpoint
    from tests._checkpoints import checkpoint_file

    return load_checkpoint(checkpoint_file(tmp_path_factory.mktemp("poster-v1") / "rafdb_best.pth", "poster-v1"))
