"""What the training loop is fed: the training batches and the per-epoch test predictions.

Loader processes stay up for the whole run (``persistent_workers``): restarting them every epoch
cost their start and the first batch's decoding at the start of each epoch, with the GPU waiting
(a 10-step epoch of the issue's measurement reached 59 % of the step rate). Persistent workers
keep their random state from one epoch to the next, so with loader processes the augmentation of
each sample is drawn from a seed of its own, made of (run seed, process rank, epoch, position in
the epoch): the same whichever worker decodes it, and the same in a resumed run. Without loader
processes the augmentation draws from the main random generator, as it always did (last.pt saves it).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from .. import distributed
from ..data.datasets import ImageDataset
from ..data.loading import device_batch, image_loader
from ..distributed import DistInfo
from ..errors import PosterError
from ..evaluation.run import predictions_table
from ..models import PosterV2
from .recipe import TrainConfig
from .sampler import BalancedSampler


class SeededSampler(Sampler[tuple[int, tuple[int, ...]]]):
    """``sampler``'s indices, each with the key its augmentation seed is made from (see ``SeededItems``)."""

    def __init__(self, sampler: DistributedSampler | BalancedSampler, seed: int, rank: int) -> None:
        self.sampler, self.seed, self.rank, self.epoch = sampler, seed, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, tuple[int, ...]]]:
        for position, index in enumerate(self.sampler):
            yield index, (self.seed, self.rank, self.epoch, position)


class SeededItems(Dataset):
    """``dataset[index]`` with torch's random generator first seeded from the sample's key."""

    def __init__(self, dataset: ImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, tuple[int, ...]]) -> tuple[torch.Tensor, int, str]:
        index, key = item
        torch.manual_seed(sample_seed(key))
        return self.dataset[index]


def sample_seed(key: tuple[int, ...]) -> int:
    """A 63-bit seed from a tuple of non-negative integers, the same on every machine and Python."""
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def train_loader(dataset: ImageDataset, config: TrainConfig, info: DistInfo, seed: int,
                 device: torch.device) -> DataLoader:
    """Shuffled (or class-balanced) batches of this process's shard; call ``sampler.set_epoch``."""
    if config.batch_size % info.world_size:
        raise PosterError(f"batch size {config.batch_size} does not split evenly over {info.world_size} processes")
    if config.balanced:
        labels = [item.label for item in dataset.listing.items]
        sampler = BalancedSampler(labels, num_replicas=info.world_size, rank=info.rank, seed=seed)
    else:
        sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed)
    batch_size = config.batch_size // info.world_size
    if config.workers == 0:
        return image_loader(dataset, batch_size=batch_size, workers=0, device=device, sampler=sampler)
    # A generator of its own: the loader's seed draw must not move the main generator (see above).
    return image_loader(SeededItems(dataset), batch_size=batch_size, workers=config.workers, device=device,
                        sampler=SeededSampler(sampler, seed, info.rank), persistent=True,
                        generator=torch.Generator().manual_seed(seed))


def test_loader(dataset: ImageDataset, info: DistInfo, *, batch_size: int, workers: int,
                device: torch.device) -> DataLoader:
    """This process's share of the test set (every ``world_size``-th image), for every epoch's
    ``predict_test``: uint8 pixels when the dataset has the evaluation transform, persistent workers."""
    source = dataset.loader_items()
    shard = Subset(source, range(info.rank, len(dataset), info.world_size))
    return image_loader(shard, batch_size=batch_size, workers=workers, device=device, persistent=True,
                        generator=torch.Generator().manual_seed(0))


def predict_test(model: PosterV2, dataset: ImageDataset, loader: DataLoader, info: DistInfo,
                 device: torch.device) -> tuple[pd.DataFrame, torch.Tensor] | None:
    """Float32 predictions on every test image (``loader``: ``test_loader``), sharded over processes:
    on rank 0 the predictions table (``poster.evaluation.run.predictions_table``) and the logits in
    the same order, None elsewhere.

    Float32 on purpose: the run written for the best epoch then shows exactly what
    ``load_checkpoint`` of the saved file gives. The logits are read once, after the last batch.
    """
    dataset.skipped = list(dataset.listing.skipped)  # this epoch's load failures only
    kept: list[int] = []
    logits: list[torch.Tensor] = []
    failed: list[tuple[int, str]] = []
    model.eval()
    with torch.inference_mode():
        for images, indices, errors in loader:
            ok = [i for i, error in enumerate(errors) if not error]
            failed += [(int(indices[i]), error) for i, error in enumerate(errors) if error]
            if ok:
                # The memory format the model was always given here, so that the logits stay the same.
                batch = device_batch(images, ok, device, torch.float32, dataset.preprocessing,
                                     memory_format=torch.contiguous_format)
                logits.append(model(batch).float())
                kept += indices[ok].tolist()
    width = len(dataset.class_names)
    local = (kept, torch.cat(logits).cpu().numpy() if logits else np.zeros((0, width), np.float32), failed)
    parts = distributed.all_gather_objects(local, info)
    if not info.is_main:
        return None
    all_indices = np.concatenate([np.asarray(p[0], dtype=np.int64) for p in parts])
    order = np.argsort(all_indices)  # back to dataset order, whatever the sharding
    all_indices = all_indices[order]
    all_logits = torch.from_numpy(np.concatenate([p[1] for p in parts])[order])
    for index, error in sorted(f for p in parts for f in p[2]):
        dataset.record_failures([index], [error])
    items = [dataset.listing.items[i] for i in all_indices]
    table = predictions_table(all_logits, [i.label for i in items], [i.path for i in items], dataset.class_names)
    return table, all_logits
