"""Small labeled datasets in every layout `poster.data.datasets` reads, built from real photos.

Faces come from skimage's astronaut and matplotlib's Grace Hopper, with mirrors and crops so
that each item is a different image; labels are whatever the test assigns.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 100  # RAF-DB's aligned crops are 100x100


@lru_cache(maxsize=1)
def face_crops() -> tuple[np.ndarray, ...]:
    """Eight distinct 100x100 RGB face crops: two photos, each plain, mirrored and two crops."""
    from matplotlib import cbook
    from skimage import data

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        hopper = image.convert("RGB")
    astronaut = Image.fromarray(data.astronaut())
    faces = [astronaut.crop((150, 30, 300, 200)), hopper.crop((130, 80, 400, 380))]
    crops = []
    for face in faces:
        w, h = face.size
        for variant in (face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                        face.crop((0, 0, w * 3 // 4, h * 3 // 4)), face.crop((w // 4, h // 4, w, h))):
            crops.append(np.asarray(variant.resize((SIDE, SIDE), Image.BILINEAR)))
    return tuple(crops)


def face(i: int) -> Image.Image:
    crops = face_crops()
    return Image.fromarray(crops[i % len(crops)])


def write_imagefolder(root: Path, labels: Sequence[int], folder_names: Sequence[str],
                      split_folder: str = "test") -> list[tuple[str, int]]:
    """``root/<split_folder>/<folder>/img_<i>.jpg`` for each label; returns (relative path, label)."""
    items = []
    for i, label in enumerate(labels):
        relative = f"{split_folder}/{folder_names[label]}/img_{i:02d}.jpg"
        _save(face(i), root / relative)
        items.append((relative, label))
    return sorted(items)


def write_rafdb(root: Path, test_labels: Sequence[int], train_labels: Sequence[int] = ()) -> list[tuple[str, int]]:
    """RAF-DB release layout with 1-based labels; returns the test items as (relative path, raf label)."""
    lines, items = [], []
    for split, labels in (("train", train_labels), ("test", test_labels)):
        for i, raf_label in enumerate(labels):
            name = f"{split}_{i + 1:04d}"
            relative = f"Image/aligned/{name}_aligned.jpg"
            _save(face(i), root / relative)
            lines.append(f"{name}.jpg {raf_label}")
            if split == "test":
                items.append((relative, raf_label))
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return items


def write_csv(path: Path, rows: Sequence[tuple[str, str]], *, images: bool = True) -> Path:
    """A path,label CSV; with ``images`` each listed path gets a face photo next to the CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for i, (relative, label) in enumerate(rows):
            writer.writerow([relative, label])
            if images:
                _save(face(i), path.parent / relative)
    return path


def write_unreadable(path: Path) -> Path:
    """A .jpg that Pillow cannot decode: the first bytes of a real JPEG, cut short, then noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(face(0), path)
    path.write_bytes(path.read_bytes()[:200] + b"\x00not a jpeg" * 4)
    return path


def _save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90)
