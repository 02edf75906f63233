"""Limits per client, not per session: a client makes as many session hashes as it likes, but not
as many addresses.

A client is its network address: the connection's peer, or, behind a proxy the operator trusts
(``POSTER_TRUSTED_PROXY=1``, as on a Hugging Face Space), the last address of ``X-Forwarded-For``
(the one the proxy itself added; earlier ones are whatever the client sent). ``cap_queue_per_client``
keeps, per address, a few sessions (a new one ends the address's least recently active one, with
its state and uploads), a few waiting requests per concurrency group (a newer one replaces its
oldest) and at most one evaluation, running or waiting.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping

from .limits import EVALUATION_GROUP

ENV_TRUSTED_PROXY = "POSTER_TRUSTED_PROXY"
REPLACED = "Replaced by your newer request."
MAX_ADDRESS_CHARS = 64


def trusted_proxy() -> bool:
    """Whether the operator said a proxy in front sets ``X-Forwarded-For`` (read on every call)."""
    return os.environ.get(ENV_TRUSTED_PROXY, "").strip().lower() in ("1", "true", "yes")


def client_address(request: Any) -> str:
    """The client's address for a Starlette/FastAPI or Gradio request, or an ASGI scope."""
    if request is None:
        return "unknown"
    if isinstance(request, Mapping):  # an ASGI scope
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.get("headers", ())}
        client = request.get("client")
        host = client[0] if client else None
    else:
        headers = {k.lower(): v for k, v in (getattr(request, "headers", None) or {}).items()}
        host = getattr(getattr(request, "client", None), "host", None)
    if trusted_proxy():
        forwarded = [part.strip() for part in headers.get("x-forwarded-for", "").split(",") if part.strip()]
        if forwarded:
            return forwarded[-1][:MAX_ADDRESS_CHARS]
    return str(host or "unknown")[:MAX_ADDRESS_CHARS]


class SessionBook:
    """Sessions seen per address. An address keeps at most ``per_address`` of them and the app at most
    ``total``: past that, a new session ends the least recently active one of its address (else of
    anyone) through ``end``, which deletes its state and uploads. Sessions idle ``idle_seconds`` are
    forgotten here (Gradio ends their state on its own schedule)."""

    def __init__(self, per_address: int, total: int, end: Callable[[str], None] = lambda session: None,
                 idle_seconds: float = 900.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_address, self.total, self.idle_seconds = per_address, total, idle_seconds
        self.end = end
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, tuple[str, float]] = OrderedDict()  # session -> (address, last event)

    def admit(self, address: str, session: str) -> list[str]:
        """Record an event of ``session`` from ``address``; returns the sessions it pushed out (ended)."""
        with self._lock:
            now = self._clock()
            while self._seen and now - next(iter(self._seen.values()))[1] > self.idle_seconds:
                self._seen.popitem(last=False)
            ended = []
            if self._seen.pop(session, None) is None:
                mine = [s for s, (a, _) in self._seen.items() if a == address]  # least recently active first
                ended = mine[: max(0, len(mine) + 1 - self.per_address)]
                for old in ended:
                    del self._seen[old]
                while len(self._seen) >= self.total:
                    ended.append(self._seen.popitem(last=False)[0])
            self._seen[session] = (address, now)
        for old in ended:
            self.end(old)
        return ended

    def sessions(self, address: str | None = None) -> int:
        with self._lock:
            return sum(1 for a, _ in self._seen.values() if address is None or a == address)


def cap_queue_per_client(demo: Any, per_group: int, sessions: SessionBook) -> None:
    """Wrap ``demo``'s queue so that each address keeps at most ``per_group`` requests waiting per
    concurrency group (a new one replaces the same event's waiting request, else the oldest; the
    replaced request ends with ``REPLACED``), at most one evaluation running or waiting, and at
    most ``sessions.per_address`` sessions (see ``SessionBook``). Running requests are never touched."""
    queue = demo._queue
    push = queue.push

    async def capped_push(body: Any, request: Any, username: Any):
        if body.fn_index is not None:
            fn = demo.fns.get(body.fn_index)
            address = client_address(request)
            if body.session_hash:
                sessions.admit(address, body.session_hash)
            for path in _named_files(body.data):
                upload_ledger().used(path)
            if fn is not None and fn.concurrency_id == EVALUATION_GROUP:
                refusal = _second_evaluation(queue, address)
                if refusal is not None:
                    return False, refusal, "queue_full"
            if fn is not None:
                await _make_room(queue, address, fn, 1 if fn.concurrency_id == EVALUATION_GROUP else per_group)
        return await push(body, request, username)

    queue.push = capped_push


def _named_files(value: Any, depth: int = 0) -> list[str]:
    """The ``path`` of every file payload in an event's data (a few levels deep)."""
    if depth > 4:
        return []
    if isinstance(value, dict):
        path = value.get("path")
        return ([path] if isinstance(path, str) else []) + [
            p for k, v in value.items() if k != "path" for p in _named_files(v, depth + 1)]
    if isinstance(value, (list, tuple)):
        return [p for v in value[:64] for p in _named_files(v, depth + 1)]
    return []


def _address_of(event: Any) -> str:
    return client_address(getattr(event, "request", None))


def _second_evaluation(queue: Any, address: str) -> str | None:
    running = [e for job in queue.active_jobs if job for e in job]
    group = queue.event_queue_per_concurrency_id.get(EVALUATION_GROUP)
    waiting = list(group.queue) if group is not None else []
    if any(e.concurrency_id == EVALUATION_GROUP and _address_of(e) == address for e in running + waiting):
        return "You already have an evaluation running or waiting; wait for it to finish or cancel it first."
    return None


async def _make_room(queue: Any, address: str, fn: Any, per_group: int) -> None:
    from gradio.server_messages import ProcessCompletedMessage

    group = queue.event_queue_per_concurrency_id.get(fn.concurrency_id)
    if group is None:
        return
    async with queue.delete_lock:
        waiting = [e for e in group.queue if _address_of(e) == address]
        # At the cap, the same event's waiting requests go first, then the oldest others.
        candidates = [e for e in waiting if e.fn is fn] + [e for e in waiting if e.fn is not fn]
        drop = candidates[: max(0, len(waiting) + 1 - per_group)]
        for event in drop:
            group.queue.remove(event)
            queue.event_ids_to_events.pop(event._id, None)
    for event in drop:
        queue.send_message(event, ProcessCompletedMessage(output={"error": REPLACED, "visible": False},
                                                          success=False, title="Replaced"))


# --- the upload cache -----------------------------------------------------------------------

ENV_CLIENT_UPLOADS_MB = "POSTER_CLIENT_UPLOADS_MB"
ENV_UPLOADS_MB = "POSTER_UPLOADS_MB"
ENV_UNUSED_UPLOAD_SECONDS = "POSTER_UNUSED_UPLOAD_SECONDS"


class UploadLedger:
    """Who put which file in Gradio's upload cache: each address may keep ``per_client`` bytes there
    and everyone together ``total``; a file no event has used ``unused_seconds`` after its upload is
    deleted (Gradio's own sweep comes only hourly)."""

    def __init__(self, per_client: int, total: int, unused_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_client, self.total, self.unused_seconds = per_client, total, unused_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._files: dict[str, tuple[str, int, float]] = {}  # path -> (address, bytes, uploaded at)
        self._used: set[str] = set()

    @classmethod
    def from_env(cls) -> "UploadLedger":
        def number(name: str, default: float) -> float:
            try:
                return float(os.environ.get(name, default))
            except ValueError:
                return default
        return cls(int(number(ENV_CLIENT_UPLOADS_MB, 1100) * 2**20), int(number(ENV_UPLOADS_MB, 4096) * 2**20),
                   number(ENV_UNUSED_UPLOAD_SECONDS, 300))

    def refusal(self, address: str, incoming: int) -> str | None:
        """Why an upload of ``incoming`` bytes from ``address`` does not fit now, or None."""
        self.sweep()
        with self._lock:
            mine = sum(size for a, size, _ in self._files.values() if a == address)
            everyone = sum(size for _, size, _ in self._files.values())
        if mine + incoming > self.per_client:
            return (f"Your uploads take {mine / 2**20:.0f} MB of the server's cache already (at most "
                    f"{self.per_client / 2**20:.0f} MB per visitor); use or close them, or wait a few minutes.")
        if everyone + incoming > self.total:
            return "The server's upload cache is full; please try again in a few minutes."
        return None

    def add(self, address: str, paths: list[str]) -> None:
        now = self._clock()
        with self._lock:
            for path in paths:
                try:
                    size = os.path.getsize(path)
                except OSError:
                    continue
                self._files[os.path.realpath(path)] = (address, size, now)

    def used(self, path: str | os.PathLike) -> None:
        """An event named this file: it stays until its session ends (``SessionFiles``)."""
        resolved = os.path.realpath(path)
        with self._lock:
            if resolved in self._files:
                self._used.add(resolved)

    def sweep(self) -> list[str]:
        """Forget files that are gone; delete those no event used in time. Returns the deleted ones."""
        from .files import discard_upload

        now = self._clock()
        with self._lock:
            gone = [p for p in self._files if not os.path.exists(p)]
            stale = [p for p, (_, _, at) in self._files.items()
                     if p not in self._used and now - at > self.unused_seconds and p not in gone]
            for path in gone + stale:
                del self._files[path]
                self._used.discard(path)
        for path in stale:
            discard_upload(path)
        return stale

    def usage(self, address: str | None = None) -> int:
        with self._lock:
            return sum(size for a, size, _ in self._files.values() if address is None or a == address)


_ledger: UploadLedger | None = None
_ledger_lock = threading.Lock()


def upload_ledger() -> UploadLedger:
    """The process's ledger (made from the environment on first use)."""
    global _ledger
    with _ledger_lock:
        if _ledger is None:
            _ledger = UploadLedger.from_env()
        return _ledger


def sweep_unused_uploads_every(seconds: float) -> None:
    """Sweep the upload cache now and then in a daemon thread (once per process)."""
    def loop() -> None:
        while True:
            time.sleep(seconds)
            upload_ledger().sweep()

    global _sweeper
    with _ledger_lock:
        if _sweeper is None:
            _sweeper = threading.Thread(target=loop, name="poster-upload-sweep", daemon=True)
            _sweeper.start()


_sweeper: threading.Thread | None = None


__all__ = ["ENV_TRUSTED_PROXY", "EVALUATION_GROUP", "REPLACED", "SessionBook", "UploadLedger", "cap_queue_per_client",
           "client_address", "sweep_unused_uploads_every", "trusted_proxy", "upload_ledger"]
