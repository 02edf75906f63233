"""One face at a time through a TorchInductor-compiled copy of the model, built in the background.

Inductor fuses the element-wise work (PReLU, residual additions, layer norms, softmax) into its
neighbours, packs every convolution and linear weight once (the weights are frozen as constants)
and launches the kernels from its C++ wrapper. On a 2-core CPU that makes POSTER++ in bfloat16
4.2-4.9x the original code against 3.3-3.7x for the eager fast mode, and POSTER v1 and ARM 15-30 %
faster. Compiling takes about a minute (POSTER v1 two, ARM ten seconds) and needs a C++ compiler. Until it
is done, where it fails, and for anything it was not built for (gradients, another input shape,
dtype or device), the eager model answers, so no call ever waits for a compilation. Only one input
shape is compiled, a single face; a batch runs face by face, which is also how ARM's faces must be
classified (alone).
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import threading

import torch
from torch import nn

from ..weights.registry import plain_copy
from .compile_guard import beside_compiles, compiling
from .transforms import preprocessing_of

log = logging.getLogger(__name__)

ENV_COMPILE = "POSTER_COMPILE"
MAX_FACES = 16  # beyond this a batch runs eagerly: one eager batch beats many single calls
COMPILING, COMPILED, EAGER = "compiling", "compiled", "eager"
MODES = ("default", "max-autotune")  # POSTER_COMPILE=max-autotune: a few % faster, minutes longer to build


@functools.lru_cache(maxsize=1)
def has_cpp_compiler() -> bool:
    """Whether Inductor finds a C++ compiler (``$CXX``, g++, c++ or clang++); looked up once."""
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c)


def compile_wanted() -> bool:
    """Whether to compile here: not switched off by ``POSTER_COMPILE=0`` and a C++ compiler exists."""
    if os.environ.get(ENV_COMPILE, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    return has_cpp_compiler()


def compile_mode() -> str | None:
    """Inductor's mode from ``POSTER_COMPILE`` (``max-autotune``), else its default (None)."""
    value = os.environ.get(ENV_COMPILE, "").strip().lower()
    return value if value in MODES[1:] else None


class CompiledForward:
    """``model``'s inference forward, compiled for one face; ``state`` says which one answers.

    ``background=False`` compiles before returning (tests, benchmarks). ``state`` is ``"compiling"``,
    then ``"compiled"``, or ``"eager"`` with the ``reason`` compiling failed.
    """

    def __init__(self, model: nn.Module, *, background: bool = True) -> None:
        self.model = model
        self._eager = model.forward_alone if getattr(model, "faces_interact", False) else model
        param = next(model.parameters())
        size = preprocessing_of(model).input_size
        self.example_shape = (1, 3, size, size)
        self.dtype, self.device = param.dtype, param.device
        self.state, self.reason = COMPILING, ""
        self.mode = compile_mode()
        self._compiled = None
        self._lock = threading.Lock()  # one call at a time: the cores are shared anyway
        self._done = threading.Event()
        if background:
            threading.Thread(target=self._build, name="poster-compile", daemon=True).start()
        else:
            self._build()

    def _build(self) -> None:
        try:
            import torch._inductor.config as inductor_config

            compiled = torch.compile(plain_copy(self.model), fullgraph=True, dynamic=False, mode=self.mode)
            # Frozen weights become constants: Inductor packs them once and folds what follows. The
            # C++ wrapper launches the graph's hundred-odd kernels without Python between them.
            with compiling(), inductor_config.patch(freezing=True, cpp_wrapper=True), torch.inference_mode():
                compiled(torch.zeros(self.example_shape, dtype=self.dtype, device=self.device))
            self._compiled, self.state = compiled, COMPILED
        except Exception as exc:  # noqa: BLE001 - any failure leaves the eager model answering
            first_line = (str(exc).splitlines() or [""])[0][:200]
            self.state, self.reason = EAGER, f"{type(exc).__name__}: {first_line}"
            log.warning("compiling %s failed, the eager model answers: %s", self.model.info.name, self.reason)
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until compiling has ended (either way); returns whether the compiled copy answers."""
        self._done.wait(timeout)
        return self.state == COMPILED

    def takes(self, x: torch.Tensor) -> bool:
        """Whether the compiled copy computes ``x`` (else the eager model does)."""
        return (self._compiled is not None and not torch.is_grad_enabled() and torch.is_inference_mode_enabled()
                and x.ndim == 4 and x.dtype == self.dtype and x.device == self.device and 0 < x.shape[0] <= MAX_FACES
                and tuple(x.shape[1:]) == self.example_shape[1:])

    @beside_compiles
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.dtype in (torch.bfloat16, torch.float16):
            x = x.to(self.dtype)  # a fast-mode model takes float32 batches and casts them itself
        if not self.takes(x):
            return self._eager(x)
        with self._lock:
            # A fresh contiguous inference tensor per face, as the example was: the compiled
            # graph's guards (strides, dispatch keys) hold for every call.
            return torch.cat([self._compiled(x[i:i + 1].clone(memory_format=torch.contiguous_format))
                              for i in range(x.shape[0])])


__all__ = ["CompiledForward", "compile_wanted", "has_cpp_compiler", "compile_mode", "ENV_COMPILE", "COMPILING", "COMPILED", "EAGER"]
