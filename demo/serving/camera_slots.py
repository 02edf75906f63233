"""Who may stream the webcam now: a few camera slots, handed out first come, first served.

Each live frame asks ``claim`` for its visitor (a client address: one address holds at most one
place, however many sessions it opens). A visitor holding a slot keeps it for
``session_seconds`` (then the stream ends and the visitor queues again) or until no frame came for
``idle_seconds`` (a closed tab, a stopped camera). Everyone else waits in line and is told how long
they have waited; a waiting page polls about once a second, so one that stops polling leaves the
line. At most one frame per visitor is processed at a time (``busy``).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator


@dataclass(frozen=True)
class Claim:
    """The answer to one frame: ``state`` is granted, waiting, ended, full (the line is) or busy."""

    state: str
    position: int = 0      # place in line while waiting (1: next)
    waited: float = 0.0    # seconds waited so far
    remaining: float = 0.0  # seconds left of a granted session
    expected: float = 0.0   # while waiting: seconds until a turn at the latest (holders use all their time)

    @property
    def granted(self) -> bool:
        return self.state == "granted"


class CameraSlots:
    """Thread-safe slot bookkeeping; ``clock`` is injectable for tests."""

    def __init__(self, capacity: int, session_seconds: float, idle_seconds: float = 3.0,
                 clock: Callable[[], float] = time.monotonic, max_waiting: int = 32) -> None:
        self.capacity = max(1, int(capacity))
        self.max_waiting = max(1, int(max_waiting))
        self.session_seconds = float(session_seconds)
        self.idle_seconds = float(idle_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._holders: dict[str, list[float]] = {}  # visitor -> [granted at, last seen]
        self._waiting: OrderedDict[str, list[float]] = OrderedDict()  # visitor -> [queued at, last seen]
        self._in_flight: set[str] = set()

    def claim(self, visitor: str) -> Claim:
        """Record that ``visitor`` sent a frame and say whether it may be processed."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            held = self._holders.get(visitor)
            if held is not None:
                if now - held[0] >= self.session_seconds:
                    del self._holders[visitor]
                    return Claim("ended")
                held[1] = now
                return Claim("granted", remaining=self.session_seconds - (now - held[0]))
            if visitor not in self._waiting and len(self._waiting) >= self.max_waiting:
                return Claim("full", position=len(self._waiting) + 1)
            queued = self._waiting.setdefault(visitor, [now, now])
            queued[1] = now
            position = list(self._waiting).index(visitor) + 1
            if position <= self.capacity - len(self._holders):
                del self._waiting[visitor]
                self._holders[visitor] = [now, now]
                return Claim("granted", remaining=self.session_seconds)
            ahead_free = max(0, self.capacity - len(self._holders))
            place = position - ahead_free
            return Claim("waiting", position=place, waited=now - queued[0], expected=self._expected(place, now))

    def _expected(self, place: int, now: float) -> float:
        # The place-th turn to free up: holders' remaining times, then whole sessions after them.
        ends = sorted(max(0.0, self.session_seconds - (now - granted)) for granted, _ in self._holders.values())
        if not ends:
            return 0.0
        rounds, index = divmod(place - 1, len(ends))
        return ends[index] + rounds * self.session_seconds

    def release(self, visitor: str) -> None:
        """The visitor stopped: free their slot (or place in line) at once."""
        with self._lock:
            self._holders.pop(visitor, None)
            self._waiting.pop(visitor, None)

    @contextmanager
    def processing(self, visitor: str) -> Iterator[bool]:
        """Yields False when this visitor already has a frame being processed."""
        with self._lock:
            busy = visitor in self._in_flight
            self._in_flight.add(visitor)
        try:
            yield not busy
        finally:
            if not busy:
                with self._lock:
                    self._in_flight.discard(visitor)

    def holders(self) -> list[str]:
        with self._lock:
            self._expire(self._clock())
            return list(self._holders)

    def _expire(self, now: float) -> None:
        for visitor, (_, seen) in list(self._holders.items()):
            if now - seen > self.idle_seconds and visitor not in self._in_flight:
                del self._holders[visitor]
        # Waiting pages poll about once a second; give them a little more slack than holders.
        for visitor, (_, seen) in list(self._waiting.items()):
            if now - seen > max(2 * self.idle_seconds, 4.0):
                del self._waiting[visitor]


__all__ = ["CameraSlots", "Claim"]
