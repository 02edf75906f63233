"""The number format every model call runs in: one rule for photos, the webcam, comparisons,
evaluation and explanations.

Unless a format is asked for, the network runs in bfloat16 where the device computes it natively
(CUDA GPUs from Ampere on, CPUs with AVX-512 BF16 or AMX) and in float32 everywhere else. On a GPU
bfloat16 is autocast over the float32 weights. On a CPU it pays only with weights converted to
bfloat16 (evaluation, the webcam's copy of the model); autocast there is slower than float32, so a
model that is shared in float32 (the photos' predictor) stays float32 on a CPU. What each format gives:

- ``float32``: the checkpoint's own format. On CUDA, convolutions use TF32 tensor cores (PyTorch's
  default), which moves POSTER++'s logits by about 0.03 against a strict float32 computation.
- ``exact``: float32 with TF32 switched off while the call runs: logits within about 1e-4 of the
  original code's. The slowest choice on a GPU.
- ``bfloat16``: autocast (or weights converted to bfloat16). The same range as float32, so it never
  overflows; logits move by up to about 0.2, the top class rarely.
- ``float16``: only when asked. POSTER++'s IR-50 stream passes float16's largest value (65504) on
  real weights, and then the scores are NaN: a batch whose logits are not all finite is computed
  again in float32, so no NaN or infinity ever leaves a model call.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

import torch

from ..errors import PosterError

FLOAT32 = "float32"
EXACT = "exact"
BFLOAT16 = "bfloat16"
FLOAT16 = "float16"
PRECISIONS = (FLOAT32, BFLOAT16, FLOAT16, EXACT)
DTYPES = {FLOAT32: torch.float32, EXACT: torch.float32, BFLOAT16: torch.bfloat16, FLOAT16: torch.float16}


def native_bfloat16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 natively (so it is faster there, not emulated)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        try:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def default_precision(device: torch.device | str, *, autocast: bool = False) -> str:
    """The rule: bfloat16 where the device runs it natively, float32 otherwise. ``autocast``: for a
    model whose float32 weights cannot be converted, where a CPU stays float32 (see above)."""
    device = torch.device(device)
    if autocast and device.type != "cuda":
        return FLOAT32
    return BFLOAT16 if native_bfloat16(device) else FLOAT32


def resolve_precision(requested: str | None, device: torch.device | str, *, autocast: bool = False) -> str:
    """``requested`` checked (None or ``"auto"``: the rule for ``device``)."""
    if requested in (None, "", "auto"):
        return default_precision(device, autocast=autocast)
    if requested not in PRECISIONS:
        raise PosterError(f"unknown precision {requested!r}; expected auto, {', '.join(PRECISIONS)}")
    return requested


def precision_of_weights(model: torch.nn.Module) -> str | None:
    """``"bfloat16"`` or ``"float16"`` for a model whose weights were converted, else None."""
    dtype = next(model.parameters()).dtype
    return {torch.bfloat16: BFLOAT16, torch.float16: FLOAT16}.get(dtype)


@contextlib.contextmanager
def running_in(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast for bfloat16 and float16; TF32 off for ``exact``; nothing for float32.

    TF32 is a process-wide switch in PyTorch: an ``exact`` call turns it off for its duration, and
    float32 calls running in other threads at that moment are exact too (never the other way round).
    """
    if precision in (BFLOAT16, FLOAT16) and device.type in ("cuda", "cpu"):
        with torch.autocast(device.type, dtype=DTYPES[precision]):
            yield
    elif precision == EXACT and device.type == "cuda":
        with no_tf32():
            yield
    else:
        yield


_tf32_lock = threading.Lock()
_tf32_holders = 0
_tf32_saved: tuple[bool, bool] = (False, True)


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """TF32 off until the last ``exact`` call running in any thread has ended, then as it was."""
    global _tf32_holders, _tf32_saved
    with _tf32_lock:
        if _tf32_holders == 0:
            _tf32_saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        _tf32_holders += 1
    try:
        yield
    finally:
        with _tf32_lock:
            _tf32_holders -= 1
            if _tf32_holders == 0:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = _tf32_saved


def finite_logits(forward: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, precision: str,
                  device: torch.device) -> tuple[torch.Tensor, str]:
    """``(float32 logits, the precision that computed them)`` for one batch.

    A float16 batch whose logits are not all finite is computed again in float32 (only then does
    this wait for the device). The other formats keep float32's range: their callers check the
    logits once, where they wait for them anyway (``ensure_finite``).
    """
    with running_in(precision, device):
        logits = forward(batch).float()
    if precision == FLOAT16 and not bool(torch.isfinite(logits).all()):
        with running_in(FLOAT32, device):
            return forward(batch.float()).float(), FLOAT32
    return logits, precision


def ensure_finite(logits: torch.Tensor, precision: str) -> torch.Tensor:
    """``logits``, or a one-line error if any is infinite or NaN (never NaN probabilities)."""
    if not bool(torch.isfinite(logits).all()):
        raise PosterError(f"the model's scores overflowed in {precision}: its weights give infinite or NaN logits")
    return logits


__all__ = ["FLOAT32", "EXACT", "BFLOAT16", "FLOAT16", "PRECISIONS", "DTYPES", "native_bfloat16",
           "default_precision", "resolve_precision", "precision_of_weights", "running_in", "no_tf32", "finite_logits",
           "ensure_finite"]
