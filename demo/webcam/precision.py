"""The number format the live webcam classifies in, by ``poster.inference.precision``'s rule:
bfloat16 where the device runs it natively, float32 otherwise; float16 on a GPU when chosen.

On a CPU the webcam's bfloat16 model is a copy of the photos' float32 model, made the first time a
visitor streams with it, kept as long as the float32 one is loaded (uploads that the store lets go
take their copies with them). On a GPU every format shares one model: bfloat16 and float16 are
autocast, and a float16 batch that overflows is classified again in float32. On a CPU with a C++
compiler the live model is compiled in the background the first time a visitor streams with it
(``poster.inference.compiled``), and the eager model answers until it is ready; on a GPU its
CUDA graphs are recorded then (``poster.inference.graphed``). ``POSTER_COMPILE=0`` switches both off.
"""
from __future__ import annotations

import copy
import threading
import weakref

import torch

from poster.inference.compiled import compile_wanted
from poster.inference.precision import BFLOAT16, FLOAT16, FLOAT32, native_bfloat16
from poster.inference.predictor import Predictor

from ..serving.store import ModelStore
from ..serving.uploads import UPLOAD_PREFIX

LABELS = {FLOAT32: "float32 (exact)", BFLOAT16: "bfloat16 (fast)", FLOAT16: "float16 (fast)"}

_lock = threading.Lock()
_variants: "weakref.WeakKeyDictionary[Predictor, dict[str, Predictor]]" = weakref.WeakKeyDictionary()
_compiled: "weakref.WeakSet[Predictor]" = weakref.WeakSet()
MAX_COMPILED = 2


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
    """``(predictor in that format, "")`` or ``(None, why not)``, like ``store.try_predictor``."""
    base, reason = store.try_predictor(key)
    if base is None:
        return None, reason
    precision = checked(precision, store.on_gpu)
    if precision == base.precision:
        return _compiling(base, key), ""
    with _lock:
        variants = _variants.setdefault(base, {})
        predictor = variants.get(precision)
        if predictor is None:
            if precision == BFLOAT16 and base.device.type == "cpu":  # autocast is slow on a CPU
                predictor = Predictor(copy.deepcopy(base.model).to(torch.bfloat16).eval(), detector=base.detector)
            else:  # the same model in another format
                predictor = Predictor(base.model, detector=base.detector, precision=precision)
            variants[precision] = predictor
    return _compiling(predictor, key), ""


def _compiling(predictor: Predictor, key: str | None) -> Predictor:
    """The live path is where speed shows: its model is compiled in the background where that works.

    Compiling takes both cores for a minute or two, so visitors' uploads are never compiled, and at
    most ``MAX_COMPILED`` models at a time hold a compiled copy."""
    if predictor.compiled is not None or (key or "").startswith(UPLOAD_PREFIX) or not compile_wanted():
        return predictor
    with _lock:
        if predictor.compiled is None and len(_compiled) < MAX_COMPILED:
            predictor.compile()
            _compiled.add(predictor)
    return predictor


__all__ = ["FLOAT32", "BFLOAT16", "FLOAT16", "LABELS", "cpu_has_bfloat16", "choices", "default", "checked",
           "live_predictor"]
