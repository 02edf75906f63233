"""Small labeled datasets in the layouts `poster.data.datasets` reads besides the image folder, and a
damaged image, built from the sample face crops of `poster.data.sample_faces`."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from poster.data.sample_faces import face, save_jpeg


def write_rafdb(root: Path, test_labels: Sequence[int], train_labels: Sequence[int] = ()) -> list[tuple[str, int]]:
    """RAF-DB release layout with 1-based labels; returns the test items as (relative path, raf label)."""
    lines, items = [], []
    for split, labels in (("train", train_labels), ("test", test_labels)):
        for i, raf_label in enumerate(labels):
            name = f"{split}_{i + 1:04d}"
            relative = f"Image/aligned/{name}_aligned.jpg"
            save_jpeg(face(i), root / relative)
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
                save_jpeg(face(i), path.parent / relative)
    return path


def write_unreadable(path: Path) -> Path:
    """A .jpg that Pillow cannot decode: the first bytes of a real JPEG, cut short, then noise."""
    save_jpeg(face(0), path)
    path.write_bytes(path.read_bytes()[:200] + b"\x00not a jpeg" * 4)
    return path
