"""``@spaces.GPU`` on Hugging Face ZeroGPU Spaces, nothing anywhere else."""
from __future__ import annotations

from typing import Callable

try:  # the `spaces` package exists on Hugging Face Spaces only
    import spaces as _spaces
except ImportError:  # pragma: no cover - depends on the host
    _spaces = None

GPU_SECONDS = 60


def available() -> bool:
    return _spaces is not None


def gpu(fn: Callable) -> Callable:
    """Ask ZeroGPU for a GPU while ``fn`` runs when ``spaces`` is importable; else ``fn`` itself."""
    if _spaces is None:
        return fn
    return _spaces.GPU(duration=GPU_SECONDS)(fn)
