"""Model calls that stay correct while another thread compiles a model.

While TorchInductor lowers a graph it traces small functions with ``torch.fx``, and a trace swaps
``nn.Module.__call__`` for the whole process (a few seconds of each compile in all). A module called
from another thread in that moment raises ``NameError`` instead of running. Functions wrapped with
``beside_compiles`` wait such a moment out before they start and run again when one began while
they ran; with no compile under way they cost one integer test. A guarded call inside another
(``Predictor.classify`` through ``CompiledForward``) leaves the waiting and retrying to the outer one.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import time
from typing import Callable, Iterator, TypeVar

import torch
from torch.fx import _symbolic_trace

T = TypeVar("T")

# The class attribute as torch defined it (a trace in progress while this module is imported
# would otherwise be taken for the original).
_MODULE_CALL = getattr(_symbolic_trace, "_orig_module_call", torch.nn.Module.__call__)
ATTEMPTS = 5  # a compile traces in short bursts; a call can meet several
WAIT_LIMIT_S = 120.0

_lock = threading.Lock()
_compiles = 0
_guarding = threading.local()  # .active: this thread is inside a guarded call


@contextlib.contextmanager
def compiling() -> Iterator[None]:
    """Marks a compile under way in this thread, so that other threads' model calls take care."""
    global _compiles
    with _lock:
        _compiles += 1
    try:
        yield
    finally:
        with _lock:
            _compiles -= 1


def compiles_under_way() -> int:
    return _compiles


def modules_swapped() -> bool:
    """Whether a ``torch.fx`` trace has replaced ``nn.Module.__call__`` right now (in any thread)."""
    return torch.nn.Module.__call__ is not _MODULE_CALL


def wait_for_modules(limit_s: float = WAIT_LIMIT_S) -> None:
    deadline = time.monotonic() + limit_s
    while modules_swapped() and time.monotonic() < deadline:
        time.sleep(0.005)


def beside_compiles(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` (which calls models and has no side effects before it fails) made safe against a
    compile in another thread."""

    @functools.wraps(fn)
    def call(*args, **kwargs) -> T:
        if getattr(_guarding, "active", False):
            return fn(*args, **kwargs)
        _guarding.active = True
        try:
            attempt = 1
            while True:
                if _compiles:
                    wait_for_modules()
                try:
                    return fn(*args, **kwargs)
                except Exception:
                    if not _compiles or attempt >= ATTEMPTS:
                        raise
                    attempt += 1
        finally:
            _guarding.active = False

    return call


__all__ = ["beside_compiles", "compiling", "compiles_under_way", "modules_swapped", "wait_for_modules"]
