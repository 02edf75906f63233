"""Shared pytest fixtures. Keep each group together under its heading."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


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
    from poster.faces import FaceDetector

    return FaceDetector()
