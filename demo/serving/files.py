"""The files of the app: which uploaded paths a handler may open, and the images it hands back.

Uploads: an event's file payload names a path, and a payload can name any path. ``uploaded_path``
accepts only files inside Gradio's upload cache (where the upload route puts what a visitor
sends) and the app's own example photos, and refuses everything else with one message that
says nothing about the file. Uploads a visitor made are removed when their session ends
(``SessionFiles``), a refused one at once (``discard_upload``), and every temporary file of the
app when it exits (``remove_temporary_files``).

Outputs: Gradio saves an output array under a name made from its content and rewrites that file every
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
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from PIL import Image

from poster.atomic import write_bytes_atomic
from poster.errors import PosterError

KEEP_SECONDS = 15 * 60  # Gradio copies a returned file within seconds; older ones are removed
JPEG_ABOVE_PIXELS = 300_000  # photos and frames as JPEG; panels and crops as lossless PNG

UPLOAD_REFUSED = "The upload did not arrive, try again."

_folder: Path | None = None
_lock = threading.Lock()
_writes = 0


class UploadRefused(PosterError):
    """A file payload that names no file this visitor uploaded; the message is always the same."""

    def __init__(self) -> None:
        super().__init__(UPLOAD_REFUSED)


# --- uploads ------------------------------------------------------------------------------

def upload_cache() -> Path:
    """Gradio's upload cache (``GRADIO_TEMP_DIR``, else ``<tmp>/gradio``), links resolved."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def example_photos() -> list[str]:
    """The astronaut (scikit-image) and Grace Hopper (matplotlib), from the installed packages."""
    paths = []
    try:
        import skimage.data

        astronaut = Path(skimage.data.__file__).parent / "astronaut.png"
        if astronaut.is_file():
            paths.append(str(astronaut))
    except ImportError:
        pass
    try:
        from matplotlib import cbook

        hopper = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
        if hopper.is_file():
            paths.append(str(hopper))
    except (ImportError, OSError, ValueError):
        pass
    return paths


@functools.lru_cache(maxsize=1)
def _examples() -> frozenset[Path]:
    return frozenset(Path(p).resolve() for p in example_photos())


def uploaded_path(payload: Any) -> Path:
    """The file a payload (Gradio's file dict, a path string or ``Path``) names, links resolved,
    when it is an upload in Gradio's cache or one of the example photos.

    Raises ``UploadRefused`` for anything else: other files, folders, missing paths, URLs,
    ``..`` and links out of the cache, dicts without a path. The message never depends on
    what the path is, so it tells a caller nothing about the server's files.
    """
    if isinstance(payload, dict):
        payload = payload.get("path")
    if not isinstance(payload, (str, os.PathLike)) or not str(payload) or "\0" in str(payload):
        raise UploadRefused()
    try:
        path = Path(payload).resolve(strict=True)
        regular = path.is_file()
    except (OSError, RuntimeError, ValueError):  # missing, a link loop, an odd name
        raise UploadRefused() from None
    if regular and (path in _examples() or upload_cache() in path.parents):
        return path
    raise UploadRefused()


def discard_upload(path: str | os.PathLike | None) -> None:
    """Delete an uploaded file from Gradio's cache (a refused one; never an example or
    anything outside the cache), with its folder when that is left empty."""
    if path is None:
        return
    try:
        resolved = Path(path).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return
    cache = upload_cache()
    if cache not in resolved.parents or not resolved.is_file():
        return
    try:
        resolved.unlink()
        if resolved.parent != cache and not any(resolved.parent.iterdir()):
            resolved.parent.rmdir()
    except OSError:
        pass


class SessionFiles:
    """Which uploaded files each session used, so that a session's uploads go when it ends.

    Gradio names an upload by its content, so two visitors sending the same photo share one
    file: it is deleted when the last session that used it ends. API clients never say that
    their session ended: past ``max_sessions`` the oldest session is ended here.
    """

    def __init__(self, max_sessions: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, set[Path]] = {}
        self.max_sessions = max_sessions

    def add(self, session: str | None, path: Path) -> None:
        if not session or path in _examples():
            return
        with self._lock:
            self._files.setdefault(session, set()).add(path)
            oldest = next(iter(self._files)) if len(self._files) > self.max_sessions else None
        if oldest is not None:
            self.end(oldest)

    def files(self, session: str) -> set[Path]:
        with self._lock:
            return set(self._files.get(session, ()))

    def end(self, session: str | None) -> list[Path]:
        """Forget ``session`` and delete the files no other session uses; returns them."""
        if not session:
            return []
        with self._lock:
            mine = self._files.pop(session, set())
            still_used = set().union(*self._files.values()) if self._files else set()
        gone = sorted(mine - still_used)
        for path in gone:
            discard_upload(path)
        return gone


# --- leaving no files behind --------------------------------------------------------------

_temporary: list[Path] = []


def register_temporary(folder: str | os.PathLike) -> None:
    """A folder of the app's own that goes when the app exits."""
    with _lock:
        if Path(folder) not in _temporary:
            _temporary.append(Path(folder))


def own_folder(folder: str | os.PathLike) -> Path:
    """``folder``, made if missing and registered to go when the app exits."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    register_temporary(folder)
    return folder


def remove_temporary_files(gradio_files: Iterable[str] = ()) -> None:
    """Delete the app's temporary folders, its written images and ``gradio_files`` (the
    uploads and outputs Gradio cached for this app). Safe to call more than once."""
    with _lock:
        folders = [*_temporary, *([_folder] if _folder is not None else [])]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    for name in gradio_files:
        discard_upload(name)


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
        write_bytes_atomic(path, data)
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
