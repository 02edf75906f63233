"""What an evaluation settles before it runs: the dataset of a checkpoint whose file does not
say it (told by the evaluated data), and for ARM, whose scores include a mean over the batch,
which batches the images go through."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.layouts import RAFDB_LABEL_FILE, SPLIT_FOLDERS, detect_layout
from ..errors import DatasetError
from ..weights.checkpoints import DATASET_CHOICES
from ..weights.registry import get_weights, list_weights

DEFAULT_BATCH = 32
# On a GPU a batch of 32 leaves it waiting for the CPU that launches its kernels (most of all in
# bfloat16, whose casts add kernels); 128 gives it whole batches of work.
GPU_BATCH = 128
ARM_PROTOCOL_BATCH = 64
PROTOCOLS = ("batch", "alone")


def infer_dataset(data: str | Path, num_classes: int, *, split: str = "test",
                  layout: str = "auto") -> tuple[str, str]:
    """(dataset key, how it was told) from the data a checkpoint is evaluated on.

    RAF-DB's own label file, or ImageFolder class folders that only one dataset of
    ``num_classes`` classes uses (``1``..``7`` RAF-DB, ``0``..``6`` AffectNet-7, class names
    CAER-S). Raises ``DatasetError`` naming ``--dataset`` where the data does not decide.
    """
    data = Path(data)
    if not data.exists():
        raise DatasetError(f"dataset not found: {data}")
    layout = detect_layout(data) if layout == "auto" else layout
    fits = [w for w in (get_weights(dataset=k) for k in _dataset_keys()) if w.num_classes == num_classes]
    choices = ", ".join(w.key for w in fits) or DATASET_CHOICES
    if layout == "rafdb":
        if any(w.key == "raf-db" for w in fits):
            return "raf-db", f"inferred from the data: RAF-DB's own label file {RAFDB_LABEL_FILE.as_posix()}"
        raise DatasetError(f"{data} is RAF-DB but the checkpoint has {num_classes} classes; pass --dataset NAME ({choices})")
    if layout != "imagefolder":
        raise DatasetError(f"the checkpoint does not say its dataset and a {layout} file does not tell it: "
                           f"pass --dataset NAME ({choices})")
    split_dir = next((data / n for n in SPLIT_FOLDERS[split] if (data / n).is_dir()), data)
    folders = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    wanted = {f.lower() for f in folders}
    matches = [w for w in fits if wanted and wanted <= {f.lower() for f in w.folder_names}]
    shown = ", ".join(folders[:8]) + (", ..." if len(folders) > 8 else "")
    if len(matches) == 1:
        return matches[0].key, f"inferred from the data: class folders {shown} are {matches[0].title}'s"
    if matches:
        raise DatasetError(f"class folders {shown} fit {' and '.join(w.title for w in matches)}: "
                           f"pass --dataset NAME ({', '.join(w.key for w in matches)})")
    raise DatasetError(f"the checkpoint does not say its dataset and class folders {shown or '(none)'} match none "
                       f"with {num_classes} classes: pass --dataset NAME ({choices})")


def _dataset_keys() -> list[str]:
    return list(dict.fromkeys(w.dataset_key for w in list_weights()))


def default_batch(device: torch.device | str | None = None) -> int:
    """The batch size of an evaluation whose batches do not change its scores, on ``device``."""
    return GPU_BATCH if device is not None and torch.device(device).type == "cuda" else DEFAULT_BATCH


def choose_protocol(model: torch.nn.Module, protocol: str | None, batch_size: int | None,
                    device: torch.device | str | None = None) -> tuple[str, int]:
    """(protocol, batch size): "independent" for models whose faces never interact; for ARM
    "batch" (the published protocol, batches of 64 unless told otherwise) or "alone"."""
    if not model.faces_interact:
        return "independent", batch_size or default_batch(device)  # either protocol gives the same scores
    protocol = protocol or "batch"
    return protocol, batch_size or (ARM_PROTOCOL_BATCH if protocol == "batch" else default_batch(device))


def describe_protocol(protocol: str, batch_size: int) -> str:
    if protocol == "batch":
        return (f"batches of {batch_size} in the dataset's listing order (label-file order for RAF-DB), the last "
                "one smaller; every face's scores include the mean over its batch, as when ARM was published")
    if protocol == "alone":
        return "each image on its own (a batch of one), as a user of single photos gets it"
    return "every image independent of its batch"
