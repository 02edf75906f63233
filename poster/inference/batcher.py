"""Face crops from many threads classified together: one network batch per short deadline.

Each live webcam stream sends its faces on its own request thread. On a GPU a batch of sixteen
faces costs little more than one, so ``MicroBatcher`` lets the first waiting caller gather what
the other threads send within ``max_wait_s`` (a few milliseconds, or until ``max_faces``), runs
them as one batch through the wrapped function, and hands each caller its own rows. There is no
background thread: whichever caller finds no batch under way leads the next one.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

DEFAULT_WAIT_S = 0.003
DEFAULT_MAX_FACES = 64


@dataclass(eq=False)
class _Request:
    crops: Sequence[np.ndarray]
    result: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


class MicroBatcher:
    """``batcher(crops)`` returns ``classify(crops)``, computed in one batch with other threads' crops.

    ``classify`` maps a list of crops to one row per crop, each row independent of the others
    (the ``Predictor`` classifies ARM's faces alone for this reason). An exception reaches every
    caller whose crops were in the failed batch.
    """

    def __init__(self, classify: Callable[[list[np.ndarray]], np.ndarray], *, max_wait_s: float = DEFAULT_WAIT_S,
                 max_faces: int = DEFAULT_MAX_FACES) -> None:
        self.classify = classify
        self.max_wait_s = max_wait_s
        self.max_faces = max_faces
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._leading = False
        self.batches = 0  # network batches run so far (for the rate line and benchmarks)

    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if not crops:
            return self.classify([])
        request = _Request(crops)
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()  # a leader waiting for more faces counts them again
            while not request.done:
                if self._leading:
                    self._cond.wait()
                else:
                    self._lead()
        if request.error is not None:
            raise request.error
        return request.result

    def _lead(self) -> None:
        """Gather until the deadline or a full batch, run it without the lock, hand out the rows.
        Called with the lock held; returns with it held."""
        self._leading = True
        deadline = time.monotonic() + self.max_wait_s
        while self._faces_pending() < self.max_faces and (left := deadline - time.monotonic()) > 0:
            self._cond.wait(left)
        batch = self._take()
        self._cond.release()
        try:
            crops = [crop for request in batch for crop in request.crops]
            try:
                rows = self.classify(crops)
                error = None
            except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
                rows, error = None, exc
        finally:
            self._cond.acquire()
        start = 0
        for request in batch:
            if error is None:
                request.result = rows[start:start + len(request.crops)]
            request.error, request.done = error, True
            start += len(request.crops)
        self.batches += 1
        self._leading = False
        self._cond.notify_all()

    def _faces_pending(self) -> int:
        return sum(len(request.crops) for request in self._pending)

    def _take(self) -> list[_Request]:
        """Whole requests from the oldest on, up to ``max_faces`` faces (at least one request)."""
        taken, faces = [], 0
        while self._pending and (not taken or faces + len(self._pending[0].crops) <= self.max_faces):
            faces += len(self._pending[0].crops)
            taken.append(self._pending.pop(0))
        return taken


__all__ = ["MicroBatcher", "DEFAULT_WAIT_S", "DEFAULT_MAX_FACES"]
