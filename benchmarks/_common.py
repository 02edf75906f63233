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
    """The CPU's model name and the vector units that decide which format is fast on it, threads, torch.

    Figures come from different CPUs (an AVX2-only one emulates bfloat16 and is several times slower in
    it; one with AVX-512 BF16 or AMX runs it natively), so every figure says which one gave it."""
    import platform

    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:  # not Linux: the platform's name is all there is
        pass
    units = [u for u in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if u in flags]
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return (f"{cpu} ({' '.join(units) or 'no AVX2'}; bfloat16 {'native' if native else 'emulated'}), "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}")


def gemm_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matrix-product rate (GFLOP/s), the ceiling a compute-bound network nears."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size ** 3 / time_ms(lambda: a @ b, repeats, warmup=2) * 1e-6
