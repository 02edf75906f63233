"""What every visitor shares: the face detector and the loaded checkpoints, created once.

A ``ModelStore`` loads each checkpoint the first time somebody needs it and keeps it for everyone
(one lock per checkpoint, so two visitors asking at once load it once). It owns every variant of a
loaded checkpoint: the photo model (a fast copy, ``poster.inference.accelerate.fast_copy``), copies
in other number formats, and their ahead-of-time compiled packages; they go when the checkpoint goes. Which checkpoint a
visitor uses is that visitor's own choice, kept in a ``gr.State`` as a plain key string:
a registry key ("raf-db") or the key of an uploaded file ("upload:" and 16 random hex digits;
uploads belong to their session, see ``demo.serving.uploads``).
"""
from __future__ import annotations

import os
import threading

import torch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from poster.weights import locate
from poster.weights.checkpoints import load_checkpoint
from poster.errors import CheckpointError
from poster.inference.faces import DetectorConfig, FaceDetector
from poster.devices import pick_device
from poster.inference.accelerate import accelerate_wanted, fast_copy
from poster.inference.precision import BFLOAT16
from poster.inference.predictor import Predictor
from poster.models.poster_v2 import PosterV2Weights
from poster.models.weights_api import Weights
from poster.weights.registry import ARCHITECTURES, get_weights, list_weights

from .limits import upload_memory_bytes
from .locks import ReadWriteLock
from .uploads import UPLOAD_PREFIX, UploadShelf

FILE_PREFIX = "file:"
MAX_ACCELERATED = 2  # variants with a compiled package at a time: each build takes the cores a minute


def missing_checkpoint_message() -> str:
    """The one line every tab shows when there is no checkpoint to classify with."""
    w = PosterV2Weights.RAF_DB.value
    return (f"No POSTER++ checkpoint found, so faces are boxed but not classified. Provide one: "
            f"put `{w.file_name}` in `{locate.DEFAULT_DIR}/` (or run `python -m poster download {w.key}`), "
            f"set `{locate.ENV_DIR}` or `{locate.ENV_HUB_REPO}`, or upload or download one in the Model tab.")


@dataclass(frozen=True)
class Choice:
    """One checkpoint a visitor can pick."""

    key: str
    label: str  # shown in dropdowns
    origin: str  # "local file", "Hub repository", "uploaded"
    weights: Weights | None = None  # registry record for the dataset checkpoints

    @property
    def architecture(self) -> str:
        """The architecture's title ("POSTER++"), or "" for a file the registry does not know."""
        return ARCHITECTURES[self.weights.arch].title if self.weights is not None else ""


def checkpoint_label(weights: Weights) -> str:
    """How the app names a released checkpoint: its architecture, then its dataset."""
    dataset = weights.title.removeprefix(ARCHITECTURES[weights.arch].title).strip() or weights.title
    return f"{ARCHITECTURES[weights.arch].title} · {dataset}"


def registry_weights(key: str) -> Weights | None:
    """The released checkpoint a store key names, if it names one."""
    if key.startswith((UPLOAD_PREFIX, FILE_PREFIX)):
        return None
    try:
        weights = get_weights(key)
    except KeyError:
        return None
    return weights if weights.kind == "checkpoint" else None


class ModelStore:
    """Shared detector and checkpoints; safe to use from many request threads at once."""

    def __init__(self, device: str | None = None, uploads_per_session: int = 2,
                 loader: Callable[..., Any] | None = None, upload_dir: str | Path | None = None,
                 checkpoint_dirs: list[str | Path] | None = None, upload_memory: int | None = None) -> None:
        self.device = str(device or pick_device())
        self.checkpoint_dirs = [Path(d) for d in checkpoint_dirs] if checkpoint_dirs else None
        self.uploads = UploadShelf(uploads_per_session, upload_memory if upload_memory is not None
                                   else upload_memory_bytes(), upload_dir)
        self._loader = loader or load_fast
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._usage: dict[str, ReadWriteLock] = {}
        self._predictors: dict[str, Predictor] = {}
        self._variants: dict[str, dict[str, Predictor]] = {}  # key -> precision -> predictor
        self._accelerated = 0
        self._explainers: dict[str, Any] = {}
        self._detector: FaceDetector | None = None
        self._files: dict[str, Path] = {}  # checkpoints named by path in POSTER_CHECKPOINT

    # --- shared objects -------------------------------------------------------------------

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def detector(self) -> FaceDetector:
        with self._lock:
            if self._detector is None:
                self._detector = FaceDetector(DetectorConfig(device="cuda" if self.on_gpu else "cpu"))
            return self._detector

    def predictor(self, key: str | None) -> Predictor:
        """The loaded checkpoint ``key``; loads it on first use. Raises ``CheckpointError``."""
        if not key:
            raise CheckpointError(missing_checkpoint_message())
        predictor = self._predictors.get(key)
        if predictor is not None:
            if key.startswith(UPLOAD_PREFIX):
                self.uploads.touch(key)
            return predictor
        with self._key_lock(key):
            predictor = self._predictors.get(key)
            if predictor is None:
                source = self._source(key)
                predictor = Predictor(self._loader(source, device=self.device), detector=self.detector())
                with self._lock:
                    self._predictors[key] = predictor
        return predictor

    def try_predictor(self, key: str | None) -> tuple[Predictor | None, str]:
        """``(predictor, "")`` or ``(None, one-line reason)``; never raises for a missing file."""
        try:
            return self.predictor(key), ""
        except CheckpointError as exc:
            return None, str(exc) if key else missing_checkpoint_message()

    def variant(self, key: str | None, precision: str | None = None, *, accelerated: bool = False) -> Predictor:
        """Checkpoint ``key`` classified in ``precision`` (``poster.inference.precision``: on a CPU
        bfloat16 runs on a converted fused copy, on a GPU every format autocasts the one model), made
        once from the loaded model and kept as long as it is. ``accelerated``: through its ahead-of-time
        package once built, or its CUDA graphs (see ``Predictor.accelerate``); never for uploads, and
        for at most ``MAX_ACCELERATED`` variants. Raises ``CheckpointError`` as ``predictor`` does."""
        base = self.predictor(key)
        precision = precision or base.precision
        if precision == base.precision:
            predictor = base
        else:
            with self._key_lock(key):
                variants = self._variants.setdefault(key, {})
                predictor = variants.get(precision)
                if predictor is None:
                    if precision == BFLOAT16 and base.device.type == "cpu":  # autocast is slow on a CPU
                        predictor = Predictor(fast_copy(base.model, torch.bfloat16), detector=base.detector)
                    else:  # the same model in another format
                        predictor = Predictor(base.model, detector=base.detector, precision=precision)
                    variants[precision] = predictor
        if (accelerated and predictor.accelerated is None and not key.startswith(UPLOAD_PREFIX)
                and (self.on_gpu or accelerate_wanted())):
            with self._lock:
                wanted = predictor.accelerated is None and self._accelerated < MAX_ACCELERATED
                if wanted:
                    self._accelerated += 1
            if wanted:
                predictor.accelerate(build=True)
        return predictor

    def explainer(self, key: str) -> Any:
        """One explainer per loaded checkpoint."""
        from explain import Explainer

        predictor = self.predictor(key)
        with self._key_lock("explain:" + key):
            if key not in self._explainers:
                self._explainers[key] = Explainer(predictor.model)
            return self._explainers[key]

    def using(self, key: str, exclusive: bool = False):
        """Context manager around a use of checkpoint ``key``'s model: shared for predictions,
        ``exclusive`` for explanations (their hooks would see other requests' tensors)."""
        with self._lock:
            lock = self._usage.setdefault(key, ReadWriteLock())
        return lock.write() if exclusive else lock.read()

    def is_loaded(self, key: str) -> bool:
        return key in self._predictors

    # --- what can be chosen ---------------------------------------------------------------

    def choices(self, own_uploads: tuple[str, ...] | list[str] = ()) -> list[Choice]:
        """Dataset checkpoints of every architecture (grouped by architecture, POSTER++ first)
        found locally or on the configured Hub repository, then the visitor's own uploads that
        are still kept."""
        repo = os.environ.get(locate.ENV_HUB_REPO)
        out = []
        for w in list_weights():
            if locate.find_local(w, self.checkpoint_dirs) is not None:
                out.append(Choice(w.key, checkpoint_label(w), "local file", w))
            elif repo:
                out.append(Choice(w.key, checkpoint_label(w), f"Hub repository {repo}", w))
        with self._lock:
            files = dict(self._files)
        for key, path in files.items():
            out.append(Choice(key, path.name, "local file"))
        for key in own_uploads:
            entry = self.uploads.get(key)
            if entry is not None:
                out.append(Choice(key, f"{entry.name} (uploaded)", "uploaded"))
        return out

    def default_key(self) -> str | None:
        """``POSTER_CHECKPOINT`` when it can be found, else the first available checkpoint."""
        keys = [c.key for c in self.choices()]
        wanted = locate.default_checkpoint()
        weights = registry_weights(wanted)
        wanted_key = weights.key if weights is not None else None
        if wanted_key in keys:
            return wanted_key
        if wanted_key is None and Path(wanted).is_file():
            key = FILE_PREFIX + Path(wanted).name
            with self._lock:
                self._files[key] = Path(wanted)
            return key
        return keys[0] if keys else None

    def label(self, key: str | None) -> str:
        if not key:
            return "none"
        if key.startswith(UPLOAD_PREFIX):
            entry = self.uploads.get(key)
            return f"{entry.name} (uploaded)" if entry else "uploaded checkpoint"
        if key.startswith(FILE_PREFIX):
            return key[len(FILE_PREFIX):]
        weights = registry_weights(key)
        return checkpoint_label(weights) if weights is not None else _short_name(key)

    # --- uploads --------------------------------------------------------------------------

    def add_upload(self, path: str | Path, name: str | None = None, owner: str = "") -> str:
        """Load an uploaded checkpoint through the safe loader and keep it for ``owner`` (the
        visitor's session); returns its key. Raises ``CheckpointError`` (one line) for a file that
        is refused (see ``UploadShelf.add``)."""
        def load(stored: str) -> Predictor:
            return Predictor(self._loader(stored, device=self.device), detector=self.detector())

        key, predictor, gone = self.uploads.add(Path(path), _short_name(name or Path(path).name), owner, load)
        with self._lock:
            self._predictors[key] = predictor
        self._unload(gone)
        return key

    def forget_session(self, owner: str | None) -> int:
        """Delete every upload of a session that ended; returns how many."""
        return len(self._unload(self.uploads.end_session(owner))) if owner else 0

    def forget_uploads(self, keys: Any) -> int:
        """Delete the uploads ``keys`` (a session's list, when Gradio drops its state)."""
        return len(self._unload(self.uploads.forget([k for k in (keys or ()) if isinstance(k, str)])))

    def forget_all_uploads(self) -> int:
        """Delete every visitor's uploads (the server that took them is closing); returns how many."""
        return len(self._unload(self.uploads.close()))

    def owns(self, owner: str, key: str) -> bool:
        return self.uploads.owns(owner, key)

    def upload_memory_used(self) -> int:
        return self.uploads.memory_used()

    def _unload(self, keys: list[str]) -> list[str]:
        with self._lock:
            for key in keys:
                self._predictors.pop(key, None)
                self._variants.pop(key, None)
                self._explainers.pop(key, None)
        return keys

    # --- internals ------------------------------------------------------------------------

    def _source(self, key: str) -> str:
        if key.startswith(UPLOAD_PREFIX):
            entry = self.uploads.get(key)
            if entry is None:
                raise CheckpointError(self.uploads.gone_reason(key))
            return str(entry.path)
        if key.startswith(FILE_PREFIX):
            with self._lock:
                path = self._files.get(key)
            if path is None:
                raise CheckpointError(f"unknown checkpoint {_short_name(key)}")
            return str(path)
        weights = registry_weights(key)
        found = locate.find_local(weights, self.checkpoint_dirs) if weights is not None else None
        return str(found) if found is not None else key  # else the Hub repository, if one is set

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def warm_up(self, key: str | None, accelerate: str | None = None) -> threading.Thread:
        """Load the detector and ``key`` in a background thread so the first visitor waits less;
        ``accelerate``: also prepare ``key``'s live variant in that precision and its accelerated
        engine (a package built by a separate, low-priority process; see ``variant``)."""
        def work() -> None:
            self.detector()
            if key and self.try_predictor(key)[0] is not None and accelerate is not None:
                self.variant(key, accelerate, accelerated=True)

        thread = threading.Thread(target=work, name="poster-warm-up", daemon=True)
        thread.start()
        return thread


def load_fast(source: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The store's loader: a checkpoint through the safe loader, as its fast copy for photos (the plain
    network is let go)."""
    return fast_copy(load_checkpoint(source, device=device))


def _short_name(name: str, limit: int = 120) -> str:
    """A visitor's file name as shown in messages: one line, at most ``limit`` characters."""
    text = " ".join(str(name).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

