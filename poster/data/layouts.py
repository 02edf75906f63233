"""The dataset layouts POSTER++ users have, each read into a ``Listing``:

- ``imagefolder``: POSTER++'s own ``DIR/<split>/<class folder>/*.jpg``, class folders named as in
  the checkpoint's registry entry (RAF-DB "1".."7", AffectNet "0".."7", CAER-S class names);
- ``rafdb``: RAF-DB's release, ``EmoLabel/list_patition_label.txt`` + ``Image/aligned/``;
- ``csv``: a file with header ``path,label`` (a class name or a 0-based index into the classes).

Labels are indices in the CHECKPOINT's class order. Missing files, unknown class folders and labels
outside the class list are recorded as ``Skipped``, never raised.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import DatasetError
from ..models.dataset_facts import RAF_DB_CLASS_NAMES
from ..weights.registry import canonical_class
from .listing import Item, Listing, Skipped

LAYOUTS = ("imagefolder", "rafdb", "csv")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}

# The original repository evaluated on a folder named valid/; other copies use val/.
SPLIT_FOLDERS = {"test": ("test", "valid", "val"), "train": ("train",)}
RAFDB_LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
RAFDB_IMAGE_DIR = Path("Image") / "aligned"


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


def list_imagefolder(data: Path, class_names: tuple[str, ...], folder_names: tuple[str, ...],
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
    for name in SPLIT_FOLDERS[split]:
        if (data / name).is_dir():
            return data / name
    # DIR may already be the split folder, holding the class folders themselves.
    known = {name.lower() for name in (*class_names, *folder_names)}
    if any(child.is_dir() and child.name.lower() in known for child in data.iterdir()):
        return data
    wanted = " or ".join(f"{name}/" for name in SPLIT_FOLDERS[split])
    raise DatasetError(f"no {split} split in {data}: expected a folder {wanted} of class folders")


def _rafdb_root(data: Path) -> Path | None:
    # The release unpacks to basic/EmoLabel/...; accept that folder or its parent.
    for root in (data, data / "basic"):
        if (root / RAFDB_LABEL_FILE).is_file():
            return root
    return None


def list_rafdb(data: Path, class_names: tuple[str, ...], split: str) -> Listing:
    root = _rafdb_root(data)
    if root is None:
        raise DatasetError(f"not a RAF-DB release: {data / RAFDB_LABEL_FILE} not found")
    # RAF-DB's labels 1..7 name its own classes; map them by name onto the checkpoint's order.
    rafdb_names = RAF_DB_CLASS_NAMES
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


def list_csv(data: Path, class_names: tuple[str, ...]) -> Listing:
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
