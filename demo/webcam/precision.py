"""The number format the live webcam classifies in, by ``poster.inference.precision``'s rule:
bfloat16 where the device runs it natively, float32 otherwise; float16 on a GPU when chosen.

Photos keep the checkpoint's float32 model. On a CPU the webcam's bfloat16 model is a fused,
converted copy of it made by the store (``ModelStore.variant``) the first time a visitor streams
with it, kept as long as the float32 one is loaded. On a GPU every format shares one model:
bfloat16 and float16 are autocast, and a float16 batch that overflows is classified again in
float32; the live model's CUDA graphs are recorded the first time it streams
(``poster.inference.graphed``). On a CPU the live model runs through a package compiled ahead of
time by a separate, low-priority process where that is switched on (``POSTER_ACCELERATE=1``, see
``poster.inference.accelerate``), and the fused copy answers until it is ready.
"""
from __future__ import annotations

from poster.errors import CheckpointError
from poster.inference.precision import BFLOAT16, FLOAT16, FLOAT32, native_bfloat16
from poster.inference.predictor import Predictor

from ..serving.store import ModelStore

LABELS = {FLOAT32: "float32 (exact)", BFLOAT16: "bfloat16 (fast)", FLOAT16: "float16 (fast)"}


def cpu_has_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX-512 BF16 or AMX), so it pays off."""
    return native_bfloat16("cpu")


def choices(on_gpu: bool) -> list[str]:
    """The formats a visitor can pick, fast one first where there is one."""
    if on_gpu:
        return [BFLOAT16, FLOAT32, FLOAT16] if native_bfloat16("cuda") else [FLOAT32, FLOAT16]
    return [BFLOAT16, FLOAT32] if cpu_has_bfloat16() else [FLOAT32]


def default(on_gpu: bool) -> str:
    return choices(on_gpu)[0]


def checked(precision: str | None, on_gpu: bool) -> str:
    """A visitor's choice if this machine offers it, else the default (API clients send anything)."""
    return precision if precision in choices(on_gpu) else default(on_gpu)


def live_predictor(store: ModelStore, key: str | None, precision: str) -> tuple[Predictor | None, str]:
    """``(predictor in that format, "")`` or ``(None, why not)``, like ``store.try_predictor``.

    The live path is where speed shows: its model runs through its accelerated engine once there is
    one (``ModelStore.variant``), the fused copy until then."""
    base, reason = store.try_predictor(key)
    if base is None:
        return None, reason
    try:
        return store.variant(key, checked(precision, store.on_gpu), accelerated=True), ""
    except CheckpointError as exc:  # the checkpoint was let go in the meantime
        return None, str(exc)


__all__ = ["FLOAT32", "BFLOAT16", "FLOAT16", "LABELS", "cpu_has_bfloat16", "choices", "default", "checked",
           "live_predictor"]
