"""Class-balanced sampling for training, sharded over torchrun's processes (``poster.distributed``)."""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class BalancedSampler(Sampler[int]):
    """Class-balanced sampling with replacement (each class drawn equally often on average), sharded.

    Every process draws the same sequence from a generator seeded by (seed, epoch) and keeps every
    ``num_replicas``-th index from its rank on, so the shards are disjoint positions of one draw:
    with one process this is exactly the unsharded sampler. Call ``set_epoch`` before each epoch.
    """

    def __init__(self, labels: Sequence[int], *, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 num_samples: int | None = None) -> None:
        if not labels:
            raise ValueError("BalancedSampler needs at least one label")
        labels_t = torch.as_tensor(list(labels), dtype=torch.long)
        counts = torch.bincount(labels_t).double()
        self.weights = 1.0 / counts[labels_t]
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        total = num_samples if num_samples is not None else len(labels_t)
        self.per_replica = math.ceil(total / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_replica

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draw = torch.multinomial(self.weights, self.per_replica * self.num_replicas, replacement=True,
                                 generator=generator)
        return iter(draw[self.rank::self.num_replicas].tolist())
