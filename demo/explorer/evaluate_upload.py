"""Evaluate a labeled set uploaded as a ``.zip``, from the Explorer tab or the ``/evaluate`` API.

The archive is checked and unpacked into its own temporary folder (``data_explorer.archive``),
listed like ``python -m poster evaluate`` lists a dataset (every layout it reads; unknown labels
listed and skipped), evaluated batch by batch (bfloat16 where the device runs it natively) and written as a run
with thumbnails. Runs go to ``POSTER_RUNS_DIR`` when the operator set a writable one (kept for
everyone), else to a folder of the visitor's session, deleted when the session ends.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Sequence

import torch
from gradio.utils import get_upload_folder

from data_explorer.archive import ArchiveCaps, ArchiveError, Unpacked, unpack_zip
from poster.data import metrics
from poster.data.datasets import ImageDataset, list_images
from poster.data.listing import Listing, Skipped
from poster.errors import PosterError
from poster.evaluation.run import THUMBNAIL_SIZE, run_summary, staged_run_dir, write_run
from poster.evaluation.steps import evaluate_in_steps
from poster.inference.precision import default_precision
from poster.data.label_order import diagnose
from poster.weights.registry import get_weights

from .runs import SESSION_PREFIX, without_folder
from ..serving.files import discard_upload, own_folder
from ..ui.messages import friendly
from ..serving.limits import ENV_RUNS_DIR
from ..serving.store import ModelStore


BATCH_SIZE = 32  # the command line's default
SESSION_TTL_S = 6 * 3600  # a visitor's runs live at most this long, even in a tab left open
_SESSION_BASE = Path(tempfile.gettempdir()) / f"poster-session-runs-{os.getpid()}"


@dataclass
class EvaluationView:
    """One step of an evaluation: progress (or, last, the run summary) and the visitor's folder
    of their own runs (made on their first evaluation)."""

    summary: dict[str, Any]
    session_dir: str | None


# --- where runs go --------------------------------------------------------------------------

def shared_runs_dir() -> Path | None:
    """``POSTER_RUNS_DIR`` when the operator set it and this process may write there, else None."""
    value = os.environ.get(ENV_RUNS_DIR)
    if not value:
        return None
    folder = Path(value)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK | os.X_OK) else None


def storage_note() -> str:
    """What happens to the runs a visitor evaluates here, in one sentence."""
    shared = shared_runs_dir()
    if shared is not None:
        return (f"Runs you evaluate here are saved in the app's runs folder ({ENV_RUNS_DIR}) and every visitor "
                f"can open them.")
    return ("Runs you evaluate here are private to this browser session and deleted when it ends (when you close "
            f"the page); the operator can set a writable {ENV_RUNS_DIR} to keep them for everyone.")


def new_session_dir() -> str:
    return tempfile.mkdtemp(prefix="session-", dir=own_folder(_SESSION_BASE))


def remove_session_dir(folder: str | None) -> None:
    """The session's runs, deleted when Gradio lets go of the session (never a folder elsewhere)."""
    if not folder:
        return
    path = Path(folder).resolve()
    if path.parent == _SESSION_BASE.resolve():
        shutil.rmtree(path, ignore_errors=True)


# --- inputs ---------------------------------------------------------------------------------

def checked_archive(path: str | Path | None) -> Path:
    """The uploaded file, which must be a ``.zip`` inside Gradio's upload folder."""
    if not path:
        raise PosterError("upload a .zip of labeled face images first")
    resolved = Path(path).resolve()
    cache = Path(get_upload_folder()).resolve()
    if cache not in resolved.parents or not resolved.is_file():
        raise PosterError("the archive did not arrive through the upload; upload it again")
    if resolved.suffix.lower() != ".zip":
        discard_upload(resolved)  # a refused upload leaves the cache at once
        raise PosterError(f"{resolved.name} is not a .zip archive")
    return resolved


def checkpoint_key(name: str | None, store: ModelStore, uploads: Sequence[str] = ()) -> str:
    """A checkpoint this visitor may use, by key or by its label in the dropdown."""
    choices = store.choices(tuple(uploads))
    for choice in choices:
        if name and name in (choice.key, choice.label):
            return choice.key
    known = ", ".join(c.key for c in choices) or "none available"
    raise PosterError(f"unknown checkpoint {name!r}; choose one of: {known}")


def fast_dtype(store: ModelStore) -> str:
    """The one precision rule: bfloat16 (converted weights) where the device runs it natively, else float32."""
    return default_precision(store.device)


def fast_model(store: ModelStore, key: str) -> torch.nn.Module:
    """The checkpoint for evaluation in ``fast_dtype``: the store's variant, kept as long as the checkpoint
    (converted weights on a CPU; on a GPU the float32 model, which ``evaluate_in_steps`` autocasts)."""
    return store.variant(key, fast_dtype(store)).model


def without_rejected(listing: Listing, unpacked: Unpacked) -> Listing:
    """The listing without the images the archive check refused (over the pixel cap, not images)."""
    if not unpacked.rejected:
        return listing
    items, skipped = [], list(listing.skipped)
    for item in listing.items:
        reason = unpacked.rejected.get(str((listing.root / item.path).resolve()))
        if reason:
            skipped.append(Skipped(item.path, reason))
        else:
            items.append(item)
    if not items:
        raise PosterError(f"no usable images in the archive ({len(skipped)} skipped; first: "
                          f"{skipped[0].path}: {skipped[0].reason})")
    return Listing(listing.root, listing.layout, listing.source, listing.class_names, items, skipped)


# --- the evaluation -------------------------------------------------------------------------

@friendly("Evaluating the set")
def evaluate_archive(archive: str | None, checkpoint: str | None, limit: float | None = None,
                     session_dir: str | None = None, uploads: Sequence[str] = (), *,
                     store: ModelStore, caps: ArchiveCaps | None = None,
                     batch_size: int = BATCH_SIZE) -> Iterator[EvaluationView]:
    """Yield the progress while it runs, then the run summary. Bad input raises ``gr.Error`` with one line; cancelling (closing the generator)
    leaves nothing behind."""
    yield from _evaluation_steps(archive, checkpoint, limit, session_dir, uploads, store,
                                 caps or ArchiveCaps.from_env(), batch_size)


def _evaluation_steps(archive, checkpoint, limit, session_dir, uploads, store: ModelStore, caps: ArchiveCaps,
              batch_size: int) -> Iterator[EvaluationView]:
    path = checked_archive(archive)
    key = checkpoint_key(checkpoint, store, uploads)
    count = int(limit) if limit else None
    if count is not None and count < 1:
        raise PosterError(f"the limit must be at least 1, got {count}")
    shared = shared_runs_dir()
    if shared is None and not (session_dir and Path(session_dir).is_dir()):
        session_dir = new_session_dir()
    out_root = shared or Path(session_dir)
    yield EvaluationView({"status": "unpacking", "archive": path.name}, session_dir)
    work = Path(tempfile.mkdtemp(prefix="poster-eval-set-"))
    try:
        with archive_names(work / "set", path.name):
            try:
                unpacked = unpack_zip(path, work / "set", caps)
            except ArchiveError:
                discard_upload(path)  # a refused archive leaves the cache at once
                raise
            model = fast_model(store, key)
            info = model.info
            folder_names = _folder_names(info.dataset)
            listing = list_images(unpacked.data, info.class_names, folder_names, split="test")
            listing = without_rejected(listing, unpacked).limit(count)
        name = run_name(key, path.stem)
        with staged_run_dir(out_root / name) as stage:
            dataset = ImageDataset(listing, preprocessing=info.preprocessing, thumbnail_dir=stage / "thumbs",
                                   thumbnail_size=THUMBNAIL_SIZE)
            start = time.perf_counter()
            steps = evaluate_in_steps(model, dataset, batch_size=batch_size, device=store.device,
                                      precision=fast_dtype(store))
            try:
                while True:
                    try:
                        progress = next(steps)
                    except StopIteration as finished:
                        table = finished.value
                        break
                    yield EvaluationView({
                        "status": "running", "done": progress.done, "total": progress.total,
                        "images_per_second": round(progress.images_per_second, 2),
                        "seconds_left": None if progress.seconds_left is None else round(progress.seconds_left, 1)},
                        session_dir)
            finally:
                steps.close()  # a cancelled evaluation stops its loader here
            summary = run_summary(table, info, dataset, split="test", device=store.device,
                                  duration_s=time.perf_counter() - start, dtype=fast_dtype(store))
            summary |= {"dataset": path.name, "dataset_root": None,
                        "checkpoint_source": Path(str(info.source)).name}
            write_run(stage, table, summary)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    value = name if shared is not None else SESSION_PREFIX + name
    yield EvaluationView(api_summary(summary, table, value, "shared" if shared is not None else "session"),
                         session_dir)


@contextmanager
def archive_names(folder: Path, archive_name: str) -> Iterator[None]:
    """Errors raised inside name files by where they are in the archive, not by the server's path."""
    try:
        yield
    except PosterError as exc:
        raise PosterError(without_folder(str(exc), folder, archive_name)) from None


def _folder_names(dataset: str | None) -> tuple[str, ...]:
    """The class folder names of a dataset checkpoint (RAF-DB's "1".."7"), as the command line uses."""
    try:
        return get_weights(dataset=dataset).folder_names if dataset else ()
    except KeyError:
        return ()


def run_name(key: str, stem: str) -> str:
    """``<checkpoint>-<archive name>-<UTC time>-<4 hex>``, in characters safe for a folder name."""
    when = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{key}-{stem}").strip("-.")[:80]
    return f"{cleaned or 'run'}-{when}-{uuid.uuid4().hex[:4]}"


def api_summary(summary: dict[str, Any], table, run: str, storage: str) -> dict[str, Any]:
    """The run summary as the API returns it: run.json's facts, intervals, per-class figures."""
    names = list(summary["class_names"])
    labels, preds = table["label"].to_numpy(), table["pred"].to_numpy()
    n, right = len(table), int((labels == preds).sum())
    scores = metrics.class_scores(labels, preds, len(names))
    per_class = []
    for k, name in enumerate(names):
        support = int(scores.support[k])
        hits = int(round(scores.recall[k] * support))
        low, high = metrics.wilson_interval(hits, support)
        per_class.append({"class": name, "n": support, "accuracy": 100 * scores.recall[k],
                          "accuracy_ci": [100 * low, 100 * high], "precision": 100 * scores.precision[k],
                          "f1": 100 * scores.f1[k]})
    low, high = metrics.wilson_interval(right, n)
    order = diagnose(metrics.confusion_matrix(labels, preds, len(names)), names)
    # Skipped files as {"file", "reason"}: API clients take any {"path": ...} object for a file to fetch.
    skipped = [{"file": s["path"], "reason": s["reason"]} for s in summary["skipped"]]
    return {"status": "done", "run": run, "storage": storage, **summary, "skipped": skipped,
            "accuracy_ci": [100 * low, 100 * high], "per_class": per_class,
            "label_order": {"suspected": order.suspected, "mapping": order.mapping,
                            "accuracy_if_remapped": 100 * order.accuracy_if_remapped}}
