"""Put a run on a Hub dataset repository.

The app lists the runs of ``POSTER_RUNS_REPO`` beside its local ones. Face images are licensed
(RAF-DB and AffectNet are for research only), so a run goes without its thumbnails unless
``--images`` is given, and never with the local paths of the machine that evaluated it: the
explorer still shows its confusion matrix, metrics and per-image table (file names, labels,
probabilities).
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from ..errors import PosterError
from .run import PREDICTIONS, RUN_JSON, THUMBNAILS
from .run_files import read_run

LICENCE_WARNING = (
    "warning: --images publishes the run's face thumbnails. RAF-DB, AffectNet and most facial expression "
    "datasets are licensed for research only and forbid redistributing their images; publish them only "
    "to a private repository or when the licence allows it.")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class HubApi(Protocol):
    """The part of ``huggingface_hub.HfApi`` that publishing uses (tests pass a local stand-in)."""

    def create_repo(self, repo_id: str, *, repo_type: str | None = None, exist_ok: bool = False,
                    private: bool | None = None) -> Any: ...

    def upload_folder(self, *, repo_id: str, folder_path: str | Path, path_in_repo: str | None = None,
                      commit_message: str | None = None, repo_type: str | None = None) -> Any: ...


def public_info(info: dict[str, Any], *, images: bool) -> dict[str, Any]:
    """run.json as published: file names instead of this machine's paths, and what was left out."""
    public = dict(info)
    public["dataset_root"] = None
    for key in ("dataset", "checkpoint_source"):
        if public.get(key):
            public[key] = Path(str(public[key])).name
    public["thumbnails"] = bool(images and info.get("thumbnails"))
    public["published"] = {"images": public["thumbnails"], "local_paths": False}
    return public


def stage_run(run_dir: str | Path, target: Path, *, images: bool) -> Path:
    """Write the publishable copy of ``run_dir`` into ``target``."""
    run_dir = Path(run_dir)
    info, _ = read_run(run_dir)  # refuses anything that is not a readable run
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / PREDICTIONS, target / PREDICTIONS)
    (target / RUN_JSON).write_text(json.dumps(public_info(info, images=images), indent=2) + "\n", encoding="utf-8")
    thumbs = run_dir / THUMBNAILS
    if images and thumbs.is_dir():
        # Only regular JPEG thumbnails: never follow a link out of the run folder.
        for path in sorted(thumbs.rglob("*.jpg")):
            if path.is_file() and not path.is_symlink():
                destination = target / THUMBNAILS / path.relative_to(thumbs)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, destination)
    return target


def publish_run(run_dir: str | Path, repo: str, *, images: bool = False, name: str | None = None,
                private: bool | None = None, api: HubApi | None = None) -> str:
    """Upload a run to the dataset repository ``repo`` under ``name`` (default: the folder's name);
    returns the run's path in the repository."""
    if not _REPO_ID.match(repo):
        raise PosterError(f"--repo {repo!r} is not a Hub repository id like user/poster-runs")
    name = name or Path(run_dir).resolve().name
    if not _RUN_NAME.match(name):
        raise PosterError(f"run name {name!r}: use letters, digits, '.', '_' and '-' only")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    with tempfile.TemporaryDirectory(prefix="poster-publish-") as folder:
        staged = stage_run(run_dir, Path(folder) / name, images=images)
        try:
            api.create_repo(repo, repo_type="dataset", exist_ok=True, private=private)
            api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=staged, path_in_repo=name,
                              commit_message=f"Run {name}" + (" with thumbnails" if images else ""))
        except PosterError:
            raise
        except Exception as exc:  # noqa: BLE001 - network and authorisation errors come in many types
            raise PosterError(f"could not upload to {repo}: {' '.join(str(exc).split())[:200]}") from None
    return name
