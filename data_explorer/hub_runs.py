"""Runs published to a Hub dataset repository (``python -m poster publish``), for the explorer.

``POSTER_RUNS_REPO=user/poster-runs`` names the repository. Its runs are downloaded once per
process (only run.json, predictions.parquet and thumbnails) into the Hub cache and then read
like local runs. A repository that cannot be reached is reported, not fatal, and is tried again
after a while rather than on every click.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

ENV_RUNS_REPO = "POSTER_RUNS_REPO"
RUN_FILES = ["*run.json", "*predictions.parquet", "*thumbs/*.jpg"]
RETRY_AFTER_S = 300.0


def _default_api() -> Any:
    from huggingface_hub import HfApi

    return HfApi()


class HubRuns:
    """One repository's runs, downloaded on first use and kept."""

    def __init__(self, api_factory: Callable[[], Any] = _default_api, cache_dir: str | Path | None = None) -> None:
        self._api_factory = api_factory
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self._folders: dict[str, Path] = {}
        self._failures: dict[str, tuple[float, str]] = {}

    def folder(self, repo: str | None = None) -> tuple[Path | None, str]:
        """``(local folder of the repository's runs, "")``, or ``(None, why not)``; ``(None, "")``
        when no repository is configured."""
        repo = repo if repo is not None else os.environ.get(ENV_RUNS_REPO, "").strip()
        if not repo:
            return None, ""
        with self._lock:
            if repo in self._folders:
                return self._folders[repo], ""
            failed = self._failures.get(repo)
            if failed and time.monotonic() - failed[0] < RETRY_AFTER_S:
                return None, failed[1]
            try:
                path = Path(self._api_factory().snapshot_download(
                    repo_id=repo, repo_type="dataset", allow_patterns=RUN_FILES, cache_dir=self._cache_dir))
            except Exception as exc:  # noqa: BLE001 - offline, missing or private repositories raise many types
                why = f"the runs of {repo} could not be downloaded ({' '.join(str(exc).split())[:160] or type(exc).__name__})"
                self._failures[repo] = (time.monotonic(), why)
                return None, why
            self._folders[repo] = path
            self._failures.pop(repo, None)
            return path, ""


_HUB = HubRuns()


def hub_runs() -> HubRuns:
    """The process-wide downloader."""
    return _HUB


def set_hub_runs(hub: HubRuns) -> None:
    """Replace the process-wide downloader (tests use a local stand-in for the Hub)."""
    global _HUB
    _HUB = hub
