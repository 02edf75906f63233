"""The classifier replayed from CUDA graphs: the live path's cheap launch on a GPU.

At batch 1 POSTER++'s eager forward on an H200 spends most of its 13 ms launching several hundred
small kernels from Python; the same kernels recorded once in a CUDA graph replay in about 2 ms.
``GraphedForward`` records one graph per batch size in ``BATCH_SIZES`` (a second or two in all, no
compiler), pads a batch up to the next recorded size and replays it. Batches larger than the
largest size, gradients, another device, dtype or precision than recorded run the eager model.
Only CUDA has graphs: ``graphed_forward`` returns None elsewhere, and callers keep the plain model.
"""
from __future__ import annotations

import bisect
import contextlib
import logging
import threading

import torch
from torch import nn

from .precision import BFLOAT16, DTYPES, EXACT, FLOAT16, FLOAT32, running_in
from .transforms import preprocessing_of

log = logging.getLogger(__name__)

GRAPHED, EAGER = "graphed", "eager"  # the engine's name on the webcam's rate line
BATCH_SIZES = (1, 2, 4, 8, 16)  # one to four faces per stream, several streams micro-batched
WARMUP_CALLS = 3  # cuDNN picks its algorithms before recording


class GraphedForward:
    """``model``'s inference forward in ``precision``, replayed from CUDA graphs (see the module)."""

    def __init__(self, model: nn.Module, precision: str = FLOAT32, batch_sizes: tuple[int, ...] = BATCH_SIZES) -> None:
        param = next(model.parameters())
        if param.device.type != "cuda":
            raise ValueError("CUDA graphs need a model on a CUDA GPU")
        self.model = model
        self.precision = precision
        self._eager = model.forward_alone
        self.device = param.device
        size = preprocessing_of(model).input_size
        self.input_shape = (3, size, size)
        self.batch_sizes = tuple(sorted(batch_sizes))
        self._lock = threading.Lock()  # a graph's input and output buffers are shared
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self.state, self.reason = GRAPHED, ""  # as AcceleratedForward's, for the Predictor's ``engine``
        try:
            pool = torch.cuda.graph_pool_handle()
            for n in reversed(self.batch_sizes):  # the largest first: the smaller ones reuse its memory
                self._graphs[n] = self._record(n, pool)
        except RuntimeError as exc:  # a recording that fails leaves the eager model answering
            self._graphs.clear()
            self.state, self.reason = EAGER, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
            log.warning("recording CUDA graphs failed, the eager model answers: %s", self.reason)

    def wait(self, timeout: float | None = None) -> bool:
        return self.state == GRAPHED  # recorded (or not) before the constructor returned

    def _autocast(self) -> contextlib.AbstractContextManager:
        """The precision while recording: autocast without its weight-cast cache (the graph records
        the casts, which then run on every replay), or float32 without TF32 for ``exact``."""
        if self.precision in (BFLOAT16, FLOAT16):
            return torch.autocast("cuda", dtype=DTYPES[self.precision], cache_enabled=False)
        return running_in(self.precision, self.device) if self.precision == EXACT else contextlib.nullcontext()

    def _record(self, n: int, pool) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        static_in = torch.zeros((n, *self.input_shape), device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.inference_mode(), self._autocast():
            for _ in range(WARMUP_CALLS):
                self._eager(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads keep running models on the GPU while this one records.
        with torch.inference_mode(), self._autocast(), torch.cuda.graph(graph, pool=pool,
                                                                        capture_error_mode="thread_local"):
            static_out = self._eager(static_in).float()
        return graph, static_in, static_out

    def takes(self, x: torch.Tensor) -> bool:
        """Whether a recorded graph computes ``x`` (else the eager model does)."""
        return (bool(self._graphs) and not torch.is_grad_enabled() and x.ndim == 4 and x.device == self.device
                and x.dtype == torch.float32 and tuple(x.shape[1:]) == self.input_shape
                and 0 < x.shape[0] <= self.batch_sizes[-1])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.takes(x):
            return self._eager(x)
        n = self.batch_sizes[bisect.bisect_left(self.batch_sizes, x.shape[0])]
        graph, static_in, static_out = self._graphs[n]
        with self._lock:
            static_in[:x.shape[0]].copy_(x)
            static_in[x.shape[0]:].zero_()  # padding rows: every face is computed on its own
            graph.replay()
            return static_out[:x.shape[0]].clone()


def graphed_forward(model: nn.Module, precision: str) -> GraphedForward | None:
    """CUDA graphs of ``model`` in ``precision`` on a CUDA GPU; None elsewhere (use the model itself).

    float16 is not recorded: its overflow check computes a batch again in float32, which a graph
    recorded in float16 cannot."""
    if next(model.parameters()).device.type != "cuda" or precision == FLOAT16:
        return None
    return GraphedForward(model, precision)


__all__ = ["GraphedForward", "graphed_forward", "BATCH_SIZES", "GRAPHED"]
