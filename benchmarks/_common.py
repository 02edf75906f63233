"""Shared helpers for the benchmark scripts: timing and a model with the reference weights."""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def recipe_checkpoint(num_classes: int = 7) -> Path:
    """The reference-recipe checkpoint, written once per machine into the temp folder."""
    from tests.recipe import write_recipe_checkpoint

    path = Path(tempfile.gettempdir()) / "poster-bench" / f"recipe_{num_classes}cls" / "rafdb_best.pth"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_recipe_checkpoint(path, num_classes)
    return path


def time_ms(fn: Callable[[], object], repeats: int = 20, warmup: int = 3, sync: Callable[[], None] | None = None) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int = 20, warmup: int = 3) -> dict[str, float]:
    """Median wall time in ms of each function, timed in turn round after round.

    Interleaving spreads this shared machine's slow and fast moments over all candidates alike,
    so their ratios hold even when the absolute figures drift between runs. Each timed call follows
    an untimed one of the same function, so none is timed on caches another candidate just filled.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            fn()
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def machine() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"
