"""The number format the live webcam classifies in: bfloat16 on CPUs that have it, half on GPUs.

Photos keep the checkpoint's float32 model. The webcam's bfloat16 model is a copy of that model
made by the store (``ModelStore.variant``) the first time a visitor streams with it, kept as long as
the float32 one is loaded. On a GPU both formats share one model: half precision is autocast. On a
CPU with a C++ compiler the live model runs through a package compiled ahead of time by a separate,
low-priority process (``poster.inference.accelerate``; ``POSTER_ACCELERATE=0`` switches that off),
and the eager fast copy answers until it is ready.
"""
from __future__ import annotations

import torch

from poster.errors import CheckpointError
from poster.inference.predictor import Predictor

from .store import ModelStore

FLOAT32 = "float32"
BFLOAT16 = "bfloat16"
FLOAT16 = "float16"
LABELS = {FLOAT32: "float32 (exact)", BFLOAT16: "bfloat16 (fast)", FLOAT16: "float16 (fast)"}


def cpu_has_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX-512 BF16 or AMX), so it pays off."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choices(on_gpu: bool) -> list[str]:
    """The formats a visitor can pick, fast one first where there is one."""
    if on_gpu:
        return [FLOAT16, FLOAT32]
    return [BFLOAT16, FLOAT32] if cpu_has_bfloat16() else [FLOAT32]


def default(on_gpu: bool) -> str:
    return choices(on_gpu)[0]


def checked(precision: str | None, on_gpu: bool) -> str:
    """A visitor's choice if this machine offers it, else the default (API clients send anything)."""
    return precision if precision in choices(on_gpu) else default(on_gpu)


def live_dtype(precision: str) -> torch.dtype:
    """The model format a precision runs in (float16 is autocast over the float32 model)."""
    return torch.bfloat16 if precision == BFLOAT16 else torch.float32


def live_predictor(store: ModelStore, key: str | None, precision: str) -> tuple[Predictor | None, str]:
    """``(predictor in that format, "")`` or ``(None, why not)``, like ``store.try_predictor``.

    The live path is where speed shows: its model runs through a compiled package once one is
    built (``ModelStore.variant``), the eager fast copy until then."""
    base, reason = store.try_predictor(key)
    if base is None:
        return None, reason
    precision = checked(precision, store.on_gpu)
    try:
        return store.variant(key, live_dtype(precision), autocast=precision == FLOAT16, accelerated=True), ""
    except CheckpointError as exc:  # the checkpoint was let go in the meantime
        return None, str(exc)


__all__ = ["FLOAT32", "BFLOAT16", "FLOAT16", "LABELS", "cpu_has_bfloat16", "choices", "default", "checked",
           "live_dtype", "live_predictor"]
