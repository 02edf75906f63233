"""Labeled face-crop datasets as one list of (path, label), and the images of that list as tensors.

``list_images`` reads any of the layouts of ``poster.data.layouts`` (auto-detected or forced).
Problems with single items never stop a run: listing records them as ``Skipped``; an unreadable
image is only found while loading, where the dataset returns a sentinel (see ``ImageDataset``) so
that a DataLoader worker does not crash.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DatasetError
from ..inference.images import DECODE_ERRORS
from ..inference.transforms import BARE_MODEL, eval_transform, resized_pixels
from ..models.weights_api import Preprocessing
from .layouts import LAYOUTS, detect_layout, list_csv, list_imagefolder, list_rafdb
from .listing import Listing, Skipped

SPLITS = ("test", "train")

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
        listing = list_imagefolder(data, classes, tuple(folder_names), split)
    elif layout == "rafdb":
        listing = list_rafdb(data, classes, split)
    elif layout == "csv":
        listing = list_csv(data, classes)
    else:
        raise DatasetError(f"unknown layout {layout!r}; expected auto or one of {', '.join(LAYOUTS)}")
    if not listing.items:
        first = f" (first problem: {listing.skipped[0].path}: {listing.skipped[0].reason})" if listing.skipped else ""
        raise DatasetError(f"no usable images in {listing.source}: {len(listing.skipped)} skipped{first}")
    return listing


def thumbnail_name(relative: str) -> str:
    """Where the thumbnail of the image at ``relative`` lives under a run's thumbs/ folder."""
    return Path(relative).with_suffix(".jpg").as_posix()


def read_rgb(path: Path) -> Image.Image:
    """Open an image as the original loader did: Pillow, converted to RGB, fully decoded.

    No ``Image.draft`` (JPEG downscaling while decoding): RAF-DB's 100x100 crops are enlarged to 224,
    where it changes nothing, and on a 512x512 photo its pixels differ from today's by up to 25 levels.
    """
    with Image.open(path) as image:
        return image.convert("RGB")


class ImageDataset(Dataset):
    """Normalized image tensors of a ``Listing``, with the original evaluation preprocessing.

    ``transform`` defaults to the evaluation transform of ``preprocessing`` (a checkpoint's record;
    POSTER++'s when not given), whose input size also sizes the zero tensor below.
    ``dataset[i]`` is ``(image, i, error)``: for an unreadable image ``error`` is the reason
    and ``image`` a zero tensor, so batches still stack and a DataLoader worker never crashes;
    the caller records it (``record_failures``). With ``thumbnail_dir`` every image read is also
    saved there as a small JPEG under its relative path, while it is decoded anyway.
    """

    def __init__(self, listing: Listing, transform: Callable[[Image.Image], torch.Tensor] | None = None,
                 *, preprocessing: Preprocessing | None = None, thumbnail_dir: Path | None = None,
                 thumbnail_size: int = 96) -> None:
        self.listing = listing
        self.preprocessing = preprocessing or BARE_MODEL
        self.transform = transform or eval_transform(self.preprocessing)
        # The evaluation transform can be split: resize on the loader's CPU, normalize on the device.
        self.splits_transform = transform is None
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
        image, reason = self._read(index)
        if image is None:
            size = self.preprocessing.input_size
            return torch.zeros(3, size, size), index, reason
        return self.transform(image), index, ""

    def pixels(self, index: int) -> tuple[torch.Tensor, int, str]:
        """``dataset[index]`` before normalizing: a (size, size, 3) uint8 image (zeros when unreadable).

        Only for the evaluation transform (``splits_transform``);
        ``poster.inference.transforms.normalize_pixels`` then gives exactly ``dataset[index]``'s values.
        """
        image, reason = self._read(index)
        if image is None:
            size = self.preprocessing.input_size
            return torch.zeros(size, size, 3, dtype=torch.uint8), index, reason
        return resized_pixels(image, self.preprocessing), index, ""

    def loader_items(self) -> Dataset:
        """What a loader should carry for this dataset: uint8 pixels (``Pixels``, normalized on the
        device by ``poster.data.loading.device_batch``) where the transform is the evaluation one,
        else the transformed items themselves."""
        return Pixels(self) if self.splits_transform else self

    def _read(self, index: int) -> tuple[Image.Image | None, str]:
        """The decoded image (its thumbnail saved on the way), or None and why it is unreadable."""
        item = self.listing.items[index]
        try:
            image = read_rgb(self.listing.root / item.path)
        except DECODE_ERRORS as exc:
            return None, f"unreadable image ({' '.join(str(exc).split()) or type(exc).__name__})"
        if self.thumbnail_dir is not None:
            self._save_thumbnail(image, item.path)
        return image, ""

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


class Pixels(Dataset):
    """``dataset``'s items as ``ImageDataset.pixels`` gives them: what a loader feeding a GPU carries."""

    def __init__(self, dataset: ImageDataset) -> None:
        if not dataset.splits_transform:
            raise ValueError("Pixels needs the evaluation transform (a dataset made without transform=)")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        return self.dataset.pixels(index)
