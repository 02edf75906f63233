"""Images handed to Gradio as files we wrote whole, instead of arrays Gradio writes itself.

Gradio saves an output array under a name made from its content and rewrites that file every
time, so two visitors getting the same picture at once (the same example photo, say) can fetch
a half-written file. Written here once, under a temporary name renamed into place, the file is
never seen incomplete; Gradio then copies it into its cache the same safe way.

Handlers return arrays (easy to test); the tab builders wrap them with ``files_out``.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

KEEP_SECONDS = 15 * 60  # Gradio copies a returned file within seconds; older ones are removed
JPEG_ABOVE_PIXELS = 300_000  # photos and frames as JPEG; panels and crops as lossless PNG

_folder: Path | None = None
_lock = threading.Lock()
_writes = 0


def _image_folder() -> Path:
    global _folder
    with _lock:
        if _folder is None:
            _folder = Path(tempfile.gettempdir()) / f"poster-app-images-{os.getpid()}"
        _folder.mkdir(parents=True, exist_ok=True)
        return _folder


def image_file(image: np.ndarray) -> str:
    """Write an RGB uint8 image once (content-addressed, atomically) and return its path."""
    array = np.ascontiguousarray(image, dtype=np.uint8)
    jpeg = array.shape[0] * array.shape[1] > JPEG_ABOVE_PIXELS
    buffer = io.BytesIO()
    if jpeg:
        Image.fromarray(array).save(buffer, "JPEG", quality=90)
    else:
        Image.fromarray(array).save(buffer, "PNG", compress_level=3)
    data = buffer.getvalue()
    folder = _image_folder()
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.{'jpg' if jpeg else 'png'}"
    if path.exists():
        os.utime(path)
    else:
        partial = folder / f".{path.name}.{uuid.uuid4().hex}.partial"
        partial.write_bytes(data)
        os.replace(partial, path)
    _clean_now_and_then(folder)
    return str(path)


def _clean_now_and_then(folder: Path, every: int = 200) -> None:
    global _writes
    with _lock:
        _writes += 1
        if _writes % every:
            return
    cutoff = time.time() - KEEP_SECONDS
    for old in folder.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass


def _is_image(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3 and value.shape[2] == 3


def to_files(value: Any) -> Any:
    """Image arrays -> file paths, also inside (image, caption) gallery lists; the rest unchanged."""
    if _is_image(value):
        return image_file(value)
    if isinstance(value, list) and value and all(isinstance(v, tuple) and v and _is_image(v[0]) for v in value):
        return [(image_file(v[0]), *v[1:]) for v in value]
    return value


def files_out(fn: Callable) -> Callable:
    """Wrap a handler so the images it returns reach Gradio as files (see the module's note)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        if isinstance(result, tuple):
            return tuple(to_files(v) for v in result)
        return to_files(result)
    return wrapper
