"""The few pieces of torch.distributed that training needs, all no-ops in a single process.

Processes are started by ``torchrun`` (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT); nothing here starts or manages processes itself.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints progress."""
        return self.rank == 0


def from_env() -> DistInfo:
    """The position torchrun gave this process (one process when not under torchrun)."""
    return DistInfo(rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1)),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def setup(device_type: str) -> DistInfo:
    """Join the process group when started by torchrun: NCCL between GPUs, Gloo on the CPU."""
    info = from_env()
    if info.enabled and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return info


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's ``obj``, in rank order (picklable plain data; small)."""
    if not info.enabled:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(values: Sequence[float], info: DistInfo, device: torch.device) -> list[float]:
    """Element-wise sums over processes (for epoch totals: loss, correct, images)."""
    if not info.enabled:
        return [float(v) for v in values]
    # float64 keeps image counts exact far past any dataset size.
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


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
