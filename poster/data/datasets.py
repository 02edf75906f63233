"""Labeled face-crop datasets in the layouts POSTER++ users have, as one list of (path, label).

Three layouts, auto-detected or forced:

- ``imagefolder``: POSTER++'s own ``DIR/<split>/<class folder>/*.jpg``, class folders named as in
  the checkpoint's registry entry (RAF-DB "1".."7", AffectNet "0".."7", CAER-S class names);
- ``rafdb``: RAF-DB's release, ``EmoLabel/list_patition_label.txt`` + ``Image/aligned/``;
- ``csv``: a file with header ``path,label`` (a class name or a 0-based index into the classes).

Labels are always indices in the CHECKPOINT's class order. Problems with single items never stop
a run: listing records missing files, unknown class folders and labels outside the class list
as ``Skipped``; an unreadable image is only found while loading, where the dataset returns a
sentinel (see ``ImageDataset``) so that a DataLoader worker does not crash.
"""
from __future__ import annotations

import csv
import io
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DatasetError
from ..inference.transforms import INPUT_SIZE, eval_transform
from ..weights.registry import PosterV2Weights, canonical_class

LAYOUTS = ("imagefolder", "rafdb", "csv")
SPLITS = ("test", "train")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}

# The original repository evaluated on a folder named valid/; other copies use val/.
_SPLIT_FOLDERS = {"test": ("test", "valid", "val"), "train": ("train",)}
RAFDB_LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
RAFDB_IMAGE_DIR = Path("Image") / "aligned"

# What Pillow raises on damaged files (SyntaxError: broken PNG chunks, struct.error: short headers).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
                  Image.DecompressionBombError)


@dataclass(frozen=True)
class Skipped:
    """An item left out of a run, and why (path relative to the dataset root)."""

    path: str
    reason: str


@dataclass(frozen=True)
class Item:
    """One labeled image: path relative to the dataset root, label in the checkpoint's order."""

    path: str
    label: int


@dataclass
class Listing:
    """Every usable item of one dataset split, plus what was skipped while listing it."""

    root: Path
    layout: str
    source: str  # the folder or file the items came from, as shown to a person
    class_names: tuple[str, ...]
    items: list[Item]
    skipped: list[Skipped] = field(default_factory=list)

    def limit(self, count: int | None) -> Listing:
        """At most ``count`` items spread evenly over the sorted list (not just the first folders)."""
        if count is None or count >= len(self.items):
            return self
        step = len(self.items) / max(count, 1)
        items = [self.items[int(i * step)] for i in range(count)]
        return Listing(self.root, self.layout, self.source, self.class_names, items, list(self.skipped))


def list_images(data: str | Path, class_names: Sequence[str], folder_names: Sequence[str] = (),
                *, split: str = "test", layout: str = "auto") -> Listing:
    """List the labeled images of ``data`` (a folder, or a CSV file) for one split.

    ``class_names`` is the checkpoint's class order; ``folder_names`` the matching ImageFolder
    folder names (class names are accepted as folder names too). Raises ``DatasetError`` when the
    layout cannot be told or no usable image is left.
    """
    data = Path(data)
    if not data.exists():
        raise DatasetError(f"dataset not found: {data}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    layout = detect_layout(data) if layout == "auto" else layout
    if layout in ("imagefolder", "rafdb") and not data.is_dir():
        raise DatasetError(f"the {layout} layout needs a folder, got the file {data}")
    classes = tuple(class_names)
    if layout == "imagefolder":
        listing = _list_imagefolder(data, classes, tuple(folder_names), split)
    elif layout == "rafdb":
        listing = _list_rafdb(data, classes, split)
    elif layout == "csv":
        listing = _list_csv(data, classes)
    else:
        raise DatasetError(f"unknown layout {layout!r}; expected auto or one of {', '.join(LAYOUTS)}")
    if not listing.items:
        first = f" (first problem: {listing.skipped[0].path}: {listing.skipped[0].reason})" if listing.skipped else ""
        raise DatasetError(f"no usable images in {listing.source}: {len(listing.skipped)} skipped{first}")
    return listing


def detect_layout(data: Path) -> str:
    """The layout of ``data``: a CSV file, a RAF-DB release, or an ImageFolder tree."""
    if data.is_file():
        if data.suffix.lower() == ".csv":
            return "csv"
        raise DatasetError(f"cannot tell the layout of {data}: a file must be a .csv of path,label")
    if _rafdb_root(data) is not None:
        return "rafdb"
    if any(child.is_dir() for child in data.iterdir()):
        return "imagefolder"
    raise DatasetError(f"cannot tell the layout of {data}: expected <split>/<class>/ folders, "
                       f"{RAFDB_LABEL_FILE} or a CSV file (or pass --layout)")


def _list_imagefolder(data: Path, class_names: tuple[str, ...], folder_names: tuple[str, ...],
                      split: str) -> Listing:
    split_dir = _split_folder(data, class_names, folder_names, split)
    index = {name.lower(): i for i, name in enumerate(class_names)}
    index.update({name.lower(): i for i, name in enumerate(folder_names)})
    expected = ", ".join(folder_names or class_names)
    items, skipped = [], []
    for folder in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        label = index.get(folder.name.lower())
        if label is None:
            skipped.append(Skipped(_relative(folder, data),
                                   f"unknown class folder {folder.name!r} ({len(files)} files; expected {expected})"))
            continue
        for path in files:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                items.append(Item(_relative(path, data), label))
            else:
                skipped.append(Skipped(_relative(path, data), f"not an image file ({path.suffix or 'no extension'})"))
    return Listing(data, "imagefolder", str(split_dir), class_names, items, skipped)


def _split_folder(data: Path, class_names: tuple[str, ...], folder_names: tuple[str, ...], split: str) -> Path:
    for name in _SPLIT_FOLDERS[split]:
        if (data / name).is_dir():
            return data / name
    # DIR may already be the split folder, holding the class folders themselves.
    known = {name.lower() for name in (*class_names, *folder_names)}
    if any(child.is_dir() and child.name.lower() in known for child in data.iterdir()):
        return data
    wanted = " or ".join(f"{name}/" for name in _SPLIT_FOLDERS[split])
    raise DatasetError(f"no {split} split in {data}: expected a folder {wanted} of class folders")


def _rafdb_root(data: Path) -> Path | None:
    # The release unpacks to basic/EmoLabel/...; accept that folder or its parent.
    for root in (data, data / "basic"):
        if (root / RAFDB_LABEL_FILE).is_file():
            return root
    return None


def _list_rafdb(data: Path, class_names: tuple[str, ...], split: str) -> Listing:
    root = _rafdb_root(data)
    if root is None:
        raise DatasetError(f"not a RAF-DB release: {data / RAFDB_LABEL_FILE} not found")
    # RAF-DB's labels 1..7 name its own classes; map them by name onto the checkpoint's order.
    rafdb_names = PosterV2Weights.RAF_DB.value.class_names
    index = {_name_key(name): i for i, name in enumerate(class_names)}
    items, skipped = [], []
    label_file = root / RAFDB_LABEL_FILE
    for number, line in enumerate(_read_text(label_file).splitlines(), start=1):
        fields = line.split()
        if not fields or not fields[0].startswith(f"{split}_"):
            continue
        where = f"{RAFDB_LABEL_FILE.as_posix()}:{number}"
        if len(fields) != 2 or not fields[1].isdigit():
            skipped.append(Skipped(where, f"expected 'NAME LABEL', got {line.strip()!r}"))
            continue
        stem = fields[0].rsplit(".", 1)[0]
        path = (RAFDB_IMAGE_DIR / f"{stem}_aligned.jpg").as_posix()
        raf_label = int(fields[1])
        name = rafdb_names[raf_label - 1] if 1 <= raf_label <= len(rafdb_names) else None
        if name is None:
            skipped.append(Skipped(path, f"label {raf_label} not in RAF-DB's 1..{len(rafdb_names)} ({where})"))
        elif _name_key(name) not in index:
            skipped.append(Skipped(path, f"label {name} is not a class of this checkpoint"))
        elif not (root / path).is_file():
            skipped.append(Skipped(path, "missing file"))
        else:
            items.append(Item(path, index[_name_key(name)]))
    return Listing(root, "rafdb", str(label_file), class_names, sorted(items, key=lambda i: i.path), skipped)


def _list_csv(data: Path, class_names: tuple[str, ...]) -> Listing:
    if not data.is_file():
        raise DatasetError(f"the csv layout needs a .csv file, got the folder {data}")
    index = {_name_key(name): i for i, name in enumerate(class_names)}
    items, skipped = [], []
    reader = csv.DictReader(io.StringIO(_read_text(data), newline=""))
    columns = {(name or "").strip().lower(): name for name in reader.fieldnames or ()}
    if "path" not in columns or "label" not in columns:
        raise DatasetError(f"{data} needs a header row with the columns path,label")
    for row in reader:
        path = (row.get(columns["path"]) or "").strip()
        text = (row.get(columns["label"]) or "").strip()
        label = _csv_label(text, index, len(class_names))
        if not path:
            skipped.append(Skipped(f"{data.name}:{reader.line_num}", "empty path"))
        elif Path(path).is_absolute() or ".." in Path(path).parts:
            # Paths are relative to the dataset root; thumbnails are written under the same names.
            skipped.append(Skipped(path, "path outside the CSV's folder"))
        elif label is None:
            skipped.append(Skipped(path, f"label {text!r} not in the class list ({', '.join(class_names)})"))
        elif not (data.parent / path).is_file():
            skipped.append(Skipped(path, "missing file"))
        else:
            items.append(Item(path, label))
    return Listing(data.parent, "csv", str(data), class_names, items, skipped)


def _csv_label(text: str, index: dict[str, int], num_classes: int) -> int | None:
    if text.lstrip("-").isdigit():
        value = int(text)
        return value if 0 <= value < num_classes else None
    return index.get(_name_key(text))


def _name_key(name: str) -> str:
    """Class names compare in any case and by canonical name ("happy" is "Happiness")."""
    return canonical_class(name.strip().capitalize()).lower()


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: spreadsheet programs write a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {' '.join(str(exc).split())}") from None


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def thumbnail_name(relative: str) -> str:
    """Where the thumbnail of the image at ``relative`` lives under a run's thumbs/ folder."""
    return Path(relative).with_suffix(".jpg").as_posix()


def read_rgb(path: Path) -> Image.Image:
    """Open an image as the original loader did: Pillow, converted to RGB, fully decoded."""
    with Image.open(path) as image:
        return image.convert("RGB")


class ImageDataset(Dataset):
    """Normalized image tensors of a ``Listing``, with the original evaluation preprocessing.

    ``dataset[i]`` is ``(image, i, error)``: for an unreadable image ``error`` is the reason
    and ``image`` a zero tensor, so batches still stack and a DataLoader worker never crashes;
    the caller records it (``record_failures``). With ``thumbnail_dir`` every image read is also
    saved there as a small JPEG under its relative path, while it is decoded anyway.
    """

    def __init__(self, listing: Listing, transform: Callable[[Image.Image], torch.Tensor] | None = None,
                 *, thumbnail_dir: Path | None = None, thumbnail_size: int = 96) -> None:
        self.listing = listing
        self.transform = transform or eval_transform()
        self.thumbnail_dir = thumbnail_dir
        self.thumbnail_size = thumbnail_size
        # Everything skipped so far: at listing, then what record_failures() adds while loading.
        self.skipped: list[Skipped] = list(listing.skipped)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.listing.class_names

    def __len__(self) -> int:
        return len(self.listing.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        item = self.listing.items[index]
        try:
            image = read_rgb(self.listing.root / item.path)
        except _DECODE_ERRORS as exc:
            reason = f"unreadable image ({' '.join(str(exc).split()) or type(exc).__name__})"
            return torch.zeros(3, INPUT_SIZE, INPUT_SIZE), index, reason
        if self.thumbnail_dir is not None:
            self._save_thumbnail(image, item.path)
        return self.transform(image), index, ""

    def record_failures(self, indices: Sequence[int], errors: Sequence[str]) -> list[int]:
        """Record the items of a batch that failed to load; return the batch positions that loaded."""
        loaded = []
        for position, (index, error) in enumerate(zip(indices, errors, strict=True)):
            if error:
                self.skipped.append(Skipped(self.listing.items[int(index)].path, error))
            else:
                loaded.append(position)
        return loaded

    def _save_thumbnail(self, image: Image.Image, relative: str) -> None:
        target = self.thumbnail_dir / thumbnail_name(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        thumbnail = image.copy()
        thumbnail.thumbnail((self.thumbnail_size, self.thumbnail_size))
        thumbnail.save(target, "JPEG", quality=85)
