"""Deterministic checkpoints written once per test process and hard-linked wherever a test wants one.

A full-size checkpoint is 0.2-0.3 GB; a fresh file per test would fill a CI machine's disk. The first
request for an (architecture, classes, dtype) writes the file; later ones link to it (or copy it
where a link cannot be made). A link shares its bytes with every other, so the original is checked
before each link and written again if any test changed it in place.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

import torch

from poster.weights.deterministic import deterministic_state_dict, write_checkpoint

_written: dict[tuple[str, int, torch.dtype], tuple[Path, tuple[int, int, int]]] = {}
_lock = threading.Lock()
_folder: Path | None = None


def keep_originals_in(folder: Path) -> None:
    """Where the originals go (conftest gives a folder of the session's, beside every ``tmp_path``)."""
    global _folder
    _folder = Path(folder)


def _signature(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _original(key: tuple[str, int, torch.dtype]) -> Path:
    global _folder
    known = _written.get(key)
    if known is not None:
        path, signature = known
        try:
            if _signature(path) == signature:
                return path
        except OSError:
            pass
    arch, num_classes, dtype = key
    if _folder is None:
        _folder = Path(tempfile.mkdtemp(prefix="deterministic-checkpoints-"))
    # Files take the weights the tests share (computing them costs more than writing them).
    state = None
    if dtype is torch.float32:
        state = _state(arch, num_classes)
    elif dtype is torch.float64:
        state = _exact_state(arch, num_classes)
    path = write_checkpoint(_folder / f"{arch}-{num_classes}-{str(dtype).rsplit('.', 1)[-1]}.pth", arch,
                            num_classes, dtype, state)
    _written[key] = path, _signature(path)
    return path


def checkpoint_file(path: str | os.PathLike, arch: str = "poster-v2", num_classes: int = 7,
                    dtype: torch.dtype = torch.float32) -> Path:
    """``path`` holding the deterministic weights of ``arch`` saved as its released file was."""
    path = Path(path)
    with _lock:
        original = _original((arch, num_classes, dtype))
        if path.exists() or path.is_symlink():
            path.unlink()
        try:
            os.link(original, path)
        except OSError:
            shutil.copyfile(original, path)
    return path


# Computing a state costs seconds (POSTER's 70 M values): it is computed in float64, and float32 is
# its rounding, exactly as deterministic_state_dict(..., torch.float32) gives it. POSTER's float64
# state is 0.6 GB and its float32 one 0.3 GB; the tests of one file ask for one or two of each, and
# two test workers keep their own.
@lru_cache(maxsize=1)
def _exact_state(arch: str, num_classes: int) -> dict[str, torch.Tensor]:
    return deterministic_state_dict(arch, num_classes, torch.float64)


@lru_cache(maxsize=2)
def _state(arch: str, num_classes: int) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in _exact_state(arch, num_classes).items()}


def deterministic_state(arch: str, num_classes: int = 7) -> dict[str, torch.Tensor]:
    """``deterministic_state_dict(arch, num_classes)`` in float32, computed once for many tests (POSTER's
    takes seconds): a new dict each call, so add, delete or replace entries, but never change a tensor
    in place (the tensors are shared)."""
    return dict(_state(arch, num_classes))
