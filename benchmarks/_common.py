"""Shared helpers for the benchmark scripts: timing, checkpoints with the deterministic weights, sample photos."""
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


CHECKPOINT_DIR = Path(tempfile.gettempdir()) / "poster-bench" / "checkpoints"


def deterministic_checkpoint(arch: str, num_classes: int = 7) -> Path:
    """``arch``'s released file (RAF-DB; AffectNet-8 for 8 classes) with the deterministic weights of
    ``poster.weights.deterministic``: same shapes and cost, untrained. Written once per machine into
    ``CHECKPOINT_DIR``, laid out as ``python -m poster download`` lays out the released files."""
    from poster.weights.deterministic import write_checkpoint
    from poster.weights.registry import get_weights

    record = get_weights(arch=arch, dataset="affectnet-8" if num_classes == 8 else "raf-db")
    path = CHECKPOINT_DIR / record.subdir / record.file_name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_checkpoint(path, arch, num_classes)
    return path


def astronaut_path() -> Path:
    """scikit-image's astronaut photo as a file (one face)."""
    import skimage.data

    return Path(skimage.data.__file__).parent / "astronaut.png"


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
