"""Batches of an ``ImageDataset`` for a model: loader processes, pinned memory, and the step onto the device.

What keeps a GPU busy (issue 23): the loader carries uint8 pixels (``datasets.Pixels``: a quarter
of float32's bytes, and no float arithmetic on the loader's cores); the batch is page-locked in the
loader's pin-memory thread, so the copy to the GPU does not wait for the GPU to finish the previous
batch; selecting, normalizing and converting happen on the device, never in the main process,
whose CPU time is what launches the GPU's work. Nothing here waits for the device.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..inference.transforms import normalize_pixels
from ..models.weights_api import Preprocessing

MAX_WORKERS = 12  # ~1 ms of CPU per 100x100 JPEG: 12 cores feed >10,000 images/s, more than the network does
PREFETCH_BATCHES = 4  # per worker: enough to ride out a slow image or a GPU burst


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, as a container or ``taskset`` sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers(device: torch.device) -> int:
    """Loader processes. None on the CPU: the forward pass already keeps every core busy and a
    loader process only takes cores from it (2 cores, bfloat16: 21.9 img/s without, 16.0 with
    one), while decoding a face crop costs a few milliseconds next to a 50-100 ms forward pass.
    On a GPU every core but two (the main process launching the network, the pin-memory thread),
    at most ``MAX_WORKERS``."""
    if device.type == "cpu":
        return 0
    return max(1, min(MAX_WORKERS, available_cores() - 2))


def image_loader(dataset: Dataset, *, batch_size: int, workers: int, device: torch.device,
                 sampler: Sampler | None = None, persistent: bool = False,
                 generator: torch.Generator | None = None) -> DataLoader:
    """A DataLoader set up for ``device``: pinned batches on CUDA, deeper prefetching, and with
    ``persistent`` workers that stay up between passes (no restart, and the next pass's first
    batches are decoded as soon as its iterator exists)."""
    extra = {"prefetch_factor": PREFETCH_BATCHES, "persistent_workers": persistent} if workers > 0 else {}
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", generator=generator, **extra)


def device_batch(images: torch.Tensor, loaded: Sequence[int], device: torch.device, dtype: torch.dtype,
                 preprocessing: Preprocessing | None = None,
                 memory_format: torch.memory_format = torch.channels_last) -> torch.Tensor:
    """The ``loaded`` rows of a loader batch as the model's input on ``device`` (channels-last by default).

    uint8 pixels (``datasets.Pixels``) are normalized there (``normalize_pixels``, the same values
    as the CPU transform); float batches are only converted. The whole batch is copied first (from
    pinned memory: no wait) and rows are dropped on the device, where a skipped image costs nothing.
    """
    batch = images.to(device, non_blocking=True)
    if len(loaded) < len(images):
        rows = torch.tensor(list(loaded), dtype=torch.long, pin_memory=device.type == "cuda")
        batch = batch[rows.to(device, non_blocking=True)]
    if batch.dtype == torch.uint8:
        return normalize_pixels(batch, preprocessing, dtype, memory_format)
    return batch.to(dtype, memory_format=memory_format)


def close_loader(loader: DataLoader) -> None:
    """Stop a loader's persistent workers now (they otherwise live until the loader is collected)."""
    iterator = getattr(loader, "_iterator", None)  # where DataLoader keeps its persistent workers' iterator
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None
