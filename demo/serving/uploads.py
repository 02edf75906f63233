"""Uploaded checkpoints, each the own of the session that uploaded it.

Each session keeps its last ``per_session`` uploads; all of them together stay under
``memory`` bytes of loaded tensors, and past that the least recently used upload of any
session goes. Only the session whose upload went is told why (its next use says so); the
others never notice. Keys are random, so nobody can name another visitor's upload, and two
visitors uploading the same bytes each keep their own file name.
"""
from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from poster.errors import CheckpointError

from .files import register_temporary
from .limits import ENV_MAX_UPLOAD_MB, max_upload_bytes

UPLOAD_PREFIX = "upload:"
MAX_NOTES = 1000  # eviction notes kept for sessions that have not looked yet


@dataclass
class Upload:
    """One kept upload: its copy, the name its visitor gave it, whose it is."""

    path: Path
    name: str
    owner: str
    memory: int  # bytes of the loaded model's tensors
    last_used: float = field(default_factory=time.monotonic)


class UploadShelf:
    """Which uploads are kept and for whom; safe to use from many threads."""

    def __init__(self, per_session: int, memory: int, folder: str | Path | None = None) -> None:
        self.per_session = per_session
        self.memory = memory
        self._folder = Path(folder) if folder else None
        self._made_folder = False
        self._lock = threading.Lock()
        self._kept: dict[str, Upload] = {}
        self._evicted: dict[str, str] = {}  # key -> name, for the one session whose file made room

    def add(self, path: Path, name: str, owner: str, load: Callable[[str], Any]) -> tuple[str, Any, list[str]]:
        """Copy an uploaded checkpoint, ``load`` it (a predictor, from the copy's path) and keep it
        for ``owner``; returns (its key, the predictor, the keys it pushed out, see ``keep``).

        Raises ``CheckpointError`` (one line) when the file is too big, unsafe, corrupt or no
        known architecture; a refused file takes no slot and pushes nothing out.
        """
        if not path.is_file():
            raise CheckpointError(f"{name}: the upload did not arrive, try again")
        size = path.stat().st_size
        limit = max_upload_bytes()
        if size > limit:
            raise CheckpointError(f"{name} is {_mb(size)}; the limit is {_mb(limit)} (set {ENV_MAX_UPLOAD_MB} to change it)")
        if size == 0:
            raise CheckpointError(f"{name} is empty")
        # Keep the file name: the loader recognises released files (and their classes) by it.
        key, stored = self.new_slot(_safe_name(name))
        try:
            shutil.copyfile(path, stored)
            predictor = load(str(stored))
        except CheckpointError:
            self.discard_slot(stored)
            raise
        except Exception as exc:  # noqa: BLE001 - a hostile file must never take the server down
            self.discard_slot(stored)
            raise CheckpointError(f"{name} could not be loaded ({type(exc).__name__})") from None
        memory = _tensor_bytes(predictor.model)
        if memory > self.memory:
            self.discard_slot(stored)
            raise CheckpointError(f"{name} needs {_mb(memory)} of memory; uploads may use {_mb(self.memory)}")
        return key, predictor, self.keep(key, stored, name, owner, memory)

    def new_slot(self, file_name: str) -> tuple[str, Path]:
        """A fresh key and the path to copy the upload to (in a folder of its own)."""
        key = UPLOAD_PREFIX + secrets.token_hex(8)
        folder = self.folder() / key[len(UPLOAD_PREFIX):]
        folder.mkdir(parents=True)
        return key, folder / file_name

    def discard_slot(self, stored: Path) -> None:
        shutil.rmtree(stored.parent, ignore_errors=True)

    def keep(self, key: str, stored: Path, name: str, owner: str, memory: int) -> list[str]:
        """Keep an upload that loaded; returns the keys it pushed out (their files are deleted):
        the owner's oldest beyond the allowance, then the least recently used of anyone while
        over the memory cap."""
        with self._lock:
            self._kept[key] = Upload(stored, name, owner, memory)
            own = sorted((u.last_used, k) for k, u in self._kept.items() if u.owner == owner and k != key)
            gone = [k for _, k in own[: max(0, len(own) + 1 - self.per_session)]]
            paths = [self._kept.pop(k).path for k in gone]
            while sum(u.memory for u in self._kept.values()) > self.memory:
                _, oldest = min((u.last_used, k) for k, u in self._kept.items() if k != key)
                entry = self._kept.pop(oldest)
                if len(self._evicted) >= MAX_NOTES:
                    self._evicted.pop(next(iter(self._evicted)))
                self._evicted[oldest] = entry.name
                gone.append(oldest)
                paths.append(entry.path)
        for path in paths:
            shutil.rmtree(path.parent, ignore_errors=True)
        return gone

    def get(self, key: str) -> Upload | None:
        with self._lock:
            return self._kept.get(key)

    def touch(self, key: str) -> None:
        with self._lock:
            entry = self._kept.get(key)
            if entry is not None:
                entry.last_used = time.monotonic()

    def gone_reason(self, key: str) -> str:
        """Why ``key`` is not kept, as its own session should hear it."""
        with self._lock:
            name = self._evicted.get(key)
        if name:
            return f"your uploaded checkpoint {name} was removed to make room for other visitors' uploads; upload it again"
        return "that uploaded checkpoint is no longer kept; upload it again"

    def owns(self, owner: str, key: str) -> bool:
        entry = self.get(key)
        return entry is not None and entry.owner == owner

    def memory_used(self) -> int:
        with self._lock:
            return sum(u.memory for u in self._kept.values())

    def end_session(self, owner: str) -> list[str]:
        """Delete every upload of a session that ended; returns their keys."""
        with self._lock:
            keys = [k for k, u in self._kept.items() if u.owner == owner]
        return self.forget(keys)

    def forget(self, keys: list[str]) -> list[str]:
        """Delete the uploads ``keys``; returns those that were kept."""
        with self._lock:
            gone = [(k, self._kept.pop(k)) for k in keys if k in self._kept]
            for k, _ in gone:
                self._evicted.pop(k, None)
        for _, entry in gone:
            shutil.rmtree(entry.path.parent, ignore_errors=True)
        return [k for k, _ in gone]

    def close(self) -> list[str]:
        """Delete every upload, and the folder if the shelf made it (the app is closing); returns
        the keys that were kept."""
        with self._lock:
            keys = list(self._kept)
            made = self._folder if self._made_folder else None
            if made is not None:
                self._folder, self._made_folder = None, False
        gone = self.forget(keys)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        return gone

    def folder(self) -> Path:
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="poster-uploads-"))
                self._made_folder = True
                register_temporary(self._folder)
            self._folder.mkdir(parents=True, exist_ok=True)
            return self._folder


def _tensor_bytes(model: Any) -> int:
    try:
        tensors = [*model.parameters(), *model.buffers()]
    except AttributeError:
        return 0
    return sum(t.numel() * t.element_size() for t in tensors)


def _mb(size: int) -> str:
    mb = size / 2**20
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.2g} MB"


def _safe_name(name: str) -> str:
    """A file name without folders or odd characters (uploads name their own files)."""
    base = Path(name).name
    cleaned = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in base).lstrip(".")
    return cleaned[:120] or "checkpoint.pth"
