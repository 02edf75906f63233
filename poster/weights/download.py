"""Released weight files into a folder, verified.

A file is fetched into ``NAME.partial`` next to where it belongs and renamed into place only when
it is complete and verified, so an interrupted or refused download never leaves a file where the
loader looks. Its sha256 goes into ``manifest.json`` in the same folder, which every load checks.

The app calls ``download(name, progress=..., quiet=True)``; ``progress(done_bytes, total_bytes)``
is called after every chunk (``total_bytes`` is None when the server does not say).
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, DownloadError
from . import locate
from . import sources
from .checkpoints import MANIFEST_NAME, sha256_file, verify_backbone, verify_checkpoint
from ..models.weights_api import Weights
from .registry import get_weights
from .sources import Source, describe_html, drive_link, folder_file_id, other_sources, sources_for
from .transfer import HtmlAnswer, ProgressFn, Unreachable, fetch

PARTIAL_SUFFIX = ".partial"

StatusFn = Callable[[str], None]


class OfflineError(DownloadError):
    """No source for a file could be reached at all (most likely no network)."""


def default_dir() -> Path:
    """Where downloads go: the first folder of ``POSTER_CHECKPOINT_DIR``, else ``checkpoints/``."""
    folders = [p for p in os.environ.get(locate.ENV_DIR, "").split(os.pathsep) if p]
    return Path(folders[0]) if folders else locate.DEFAULT_DIR


def download(name: str, dest_dir: str | Path | None = None, source: str | Source = "auto", *,
             hub_repo: str | None = None, url_template: str | None = None,
             progress: ProgressFn | None = None, status: StatusFn | None = None,
             quiet: bool = False, force: bool = False, retries: int = 2) -> Path:
    """Download one registered weight file ("raf-db", "ir50", ...) into ``dest_dir``; returns its path.

    A file already there and verified is kept (``force`` downloads it again). ``source`` is
    "auto", "gdrive", "hub", "url" or a ``Source``; "auto" tries each known source in turn.
    ``status`` receives one-line messages (which source, verifying, done); ``quiet`` hides the
    progress bar. Raises ``DownloadError`` (``OfflineError`` when nothing could be reached).
    """
    weights = downloadable(name)
    candidates = sources_for(weights, source, hub_repo=hub_repo, url_template=url_template)
    dest = Path(dest_dir) if dest_dir is not None else default_dir()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / locate.relative_path(weights)
    target.parent.mkdir(parents=True, exist_ok=True)
    say = status or (lambda _message: None)
    with _lock_for(target):  # two clicks in the app must not write one partial file twice
        if not force and _present(target, weights, say):
            say(f"{weights.file_name}: already in {dest}/ and verified")
            return target
        return _fetch_verified(weights, target, candidates, progress=progress, say=say, quiet=quiet,
                               retries=retries)


def download_many(names: Iterable[str], dest_dir: str | Path | None = None, source: str | Source = "auto",
                  **options: Any) -> list[Path]:
    """``download`` each name; every file is tried, failures are raised together at the end.

    Stops at the first ``OfflineError``: without a network the other files would fail the same way.
    """
    paths, failures = [], []
    for name in names:
        try:
            paths.append(download(name, dest_dir, source, **options))
        except OfflineError:
            raise
        except DownloadError as exc:
            failures.append(str(exc))
    if failures:
        raise DownloadError(" | ".join(failures))
    return paths


def verify(path: str | Path, weights: Weights) -> str:
    """Check a weight file as the loader will read it; returns its sha256."""
    if weights.kind == "checkpoint":
        return verify_checkpoint(path, weights.key)
    verify_backbone(path, weights.key)
    return sha256_file(path)


def _fetch_verified(weights: Weights, target: Path, candidates: list[Source], *, progress: ProgressFn | None,
                    say: StatusFn, quiet: bool, retries: int) -> Path:
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    failures: list[str] = []
    unreachable: list[str] = []
    for source in candidates:
        if source.name == "Google Drive" and not weights.gdrive_id:
            try:
                weights = _with_drive_folder_id(weights, source, say)
            except Unreachable as exc:
                unreachable.append(str(exc))
                continue
            except DownloadError as exc:
                failures.append(str(exc))
                continue
        url = source.url(weights)
        say(f"{weights.file_name}: downloading from {source.name}")
        try:
            fetch(url, partial, headers=source.headers, progress=progress, label=weights.file_name,
                  quiet=quiet, retries=retries)
        except Unreachable as exc:
            unreachable.append(str(exc))
            continue
        except HtmlAnswer as exc:
            failures.append(describe_html(exc.page, exc.url, weights))
            continue
        except DownloadError as exc:
            failures.append(f"{source.name}: {exc}")
            continue
        say(f"{weights.file_name}: verifying")
        try:
            sha = verify(partial, weights)
        except CheckpointError as exc:
            partial.unlink(missing_ok=True)  # a bad complete file cannot be resumed: the next run starts over
            # The loader names the file it read; the person knows it by its real name.
            failures.append(f"{source.name} gave a file that does not verify, removed it "
                            f"({str(exc).replace(partial.name, target.name)})")
            continue
        partial.replace(target)
        _record(target, weights, sha, url)
        say(f"{weights.file_name}: saved to {target} (sha256 {sha[:12]}...)")
        return target
    if unreachable and not failures:
        raise OfflineError("; ".join(unreachable) + f"; no network? download {weights.file_name} by hand from "
                           f"{drive_link(weights)} and put it in {target.parent.resolve()}/")
    hint = f"; {other_sources(weights)}" if any(s.name == "Google Drive" for s in candidates) else ""
    raise DownloadError(f"could not download {weights.file_name}: " + "; ".join(failures + unreachable) + hint)


def _with_drive_folder_id(weights: Weights, source: Source, say: StatusFn) -> Weights:
    """The record with the Drive file id that its Drive folder lists for its file name."""
    from dataclasses import replace

    import requests

    from .transfer import CONNECT_TIMEOUT_S, READ_TIMEOUT_S

    url = sources.GDRIVE_FOLDER_LIST_URL.format(folder=weights.gdrive_folder)
    say(f"{weights.file_name}: looking it up in Google Drive folder {weights.gdrive_folder}")
    try:
        answer = requests.get(url, headers=dict(source.headers), timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    except requests.RequestException as exc:
        raise Unreachable(f"Google Drive: could not reach {url} ({type(exc).__name__})") from None
    file_id = folder_file_id(answer.text, weights.file_name) if answer.ok else None
    if file_id is None:
        raise DownloadError(f"Google Drive no longer serves {weights.file_name}: folder {weights.gdrive_folder} "
                            f"{'does not list it' if answer.ok else f'answered HTTP {answer.status_code}'}")
    return replace(weights, gdrive_id=file_id)


def _present(target: Path, weights: Weights, say: StatusFn) -> bool:
    """True when ``target`` exists and verifies (by its recorded sha256, or by loading it)."""
    if not target.is_file():
        return False
    entry = _read_manifest(target.parent)["files"].get(target.name)
    recorded = entry.get("sha256") if isinstance(entry, dict) else None
    if recorded:
        if recorded == sha256_file(target):
            return True
        say(f"{weights.file_name}: differs from the sha256 in {MANIFEST_NAME}; downloading it again")
        return False
    try:
        sha = verify(target, weights)
    except CheckpointError as exc:
        say(f"{weights.file_name}: the file there does not verify ({exc}); downloading it again")
        return False
    _record(target, weights, sha, "found in place")
    return True


# --- manifest.json ------------------------------------------------------------------------------

_MANIFEST_LOCK = threading.Lock()


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return {"files": {}}
    return data


def _record(target: Path, weights: Weights, sha: str, source: str) -> None:
    """Add the file's entry to ``manifest.json`` (written whole, then renamed, so never half)."""
    with _MANIFEST_LOCK:
        data = _read_manifest(target.parent)
        data["files"][target.name] = {
            "sha256": sha, "key": weights.key, "bytes": target.stat().st_size, "source": source,
            "downloaded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        path = target.parent / MANIFEST_NAME
        tmp = path.with_name(path.name + PARTIAL_SUFFIX)
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)


_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path.resolve(), threading.Lock())


def downloadable(name: str) -> Weights:
    """The registry record named ``name``, or a DownloadError that says which names exist."""
    try:
        return get_weights(name)
    except KeyError as exc:
        raise DownloadError(str(exc).strip("'\"")) from None
