"""Real faces without a dataset: the photos that ship with scikit-image and matplotlib, face crops of
them, and a small labeled image-folder dataset made of those crops.

For trying the commands and measuring speed where no face dataset is at hand; labels are whatever
the caller assigns. Needs scikit-image (``pip install poster-fer[samples]``).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 100  # RAF-DB's aligned crops are 100x100


def sample_photos() -> list[np.ndarray]:
    """scikit-image's astronaut (512x512) and matplotlib's Grace Hopper (512 wide, 600 high), RGB uint8, one face each."""
    from matplotlib import cbook

    try:
        from skimage import data
    except ImportError:
        raise ImportError("the sample photos need scikit-image: pip install scikit-image") from None
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        hopper = np.asarray(image.convert("RGB"))
    return [data.astronaut(), hopper]


@lru_cache(maxsize=1)
def face_crops() -> tuple[np.ndarray, ...]:
    """Eight distinct 100x100 RGB face crops: each photo's face plain, mirrored and cut two ways."""
    astronaut, hopper = (Image.fromarray(photo) for photo in sample_photos())
    faces = [astronaut.crop((150, 30, 300, 200)), hopper.crop((130, 80, 400, 380))]
    crops = []
    for face_image in faces:
        w, h = face_image.size
        for variant in (face_image, face_image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                        face_image.crop((0, 0, w * 3 // 4, h * 3 // 4)), face_image.crop((w // 4, h // 4, w, h))):
            crops.append(np.asarray(variant.resize((SIDE, SIDE), Image.BILINEAR)))
    return tuple(crops)


def face(i: int) -> Image.Image:
    """Face crop ``i`` (taken round-robin from ``face_crops``)."""
    crops = face_crops()
    return Image.fromarray(crops[i % len(crops)])


def save_jpeg(image: Image.Image, path: Path) -> None:
    """Save as a quality-90 JPEG, creating the folders on the way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90)


def write_imagefolder(root: Path, labels: Sequence[int], folder_names: Sequence[str],
                      split_folder: str = "test") -> list[tuple[str, int]]:
    """``root/<split_folder>/<folder>/img_<i>.jpg`` for each label; returns the sorted (relative path, label)."""
    items = []
    for i, label in enumerate(labels):
        relative = f"{split_folder}/{folder_names[label]}/img_{i:02d}.jpg"
        save_jpeg(face(i), root / relative)
        items.append((relative, label))
    return sorted(items)
