"""Which evaluation runs a visitor may open (the runs folder's, their own session's, the Hub's),
and which checkpoint can explain a run's images.

Runs are folders written by ``python -m poster evaluate`` (see ``data_explorer.runs``), loaded
once and kept while their files are unchanged.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import gradio as gr

from data_explorer.hub_runs import ENV_RUNS_REPO, hub_runs
from data_explorer.runs import Run, find_runs
from poster.weights.registry import get_weights

from ..ui import render
from ..serving.limits import runs_dir
from ..serving.store import ModelStore

# Run names in the dropdown: a local run by its folder under the runs folder, a visitor's own
# run and a Hub run by a prefix. A prefixed name is only ever looked up among the runs found in
# that source's own folder, so no name reaches a folder outside it.
SESSION_PREFIX = "session:"
HUB_PREFIX = "hub:"

_cache: dict[Path, tuple[float, Run]] = {}
_cache_lock = threading.Lock()


def how_to_make_a_run(root: Path) -> str:
    return (f"No evaluation runs found in {root}/. Make one with: python -m poster evaluate --checkpoint raf-db "
            f"--data /path/to/RAF-DB --thumbnails (it writes {root}/raf-db-test/), then reload this page; or "
            f"evaluate a labeled .zip above.")


def list_runs(root: str | Path | None = None) -> tuple[list[Run], list[str]]:
    """Loaded runs (cached while their files are unchanged) and one line per broken run."""
    root = Path(root) if root else runs_dir()
    runs, broken = find_runs(root)
    with _cache_lock:
        for run in runs:
            _cache[run.path.resolve()] = (_mtime(run.path), run)
    return runs, [f"{b.path.name}: {without_folder(b.reason, root)}" for b in broken]


def without_folder(text: str, folder: Path, name: str = "the runs folder") -> str:
    """``text`` with the server's path of ``folder`` left out: paths inside it become relative,
    the folder itself is called ``name``."""
    for prefix in sorted({str(folder.resolve()), str(folder.absolute())}, key=len, reverse=True):
        text = text.replace(prefix + os.sep, "").replace(prefix, name)
    return text


def run_source(name: str, root: str | Path | None = None,
               session_dir: str | Path | None = None) -> tuple[Path | None, str]:
    """(the folder to look in, the run's name inside it) for a dropdown value."""
    if name.startswith(SESSION_PREFIX):
        return (Path(session_dir) if session_dir else None), name[len(SESSION_PREFIX):]
    if name.startswith(HUB_PREFIX):
        return hub_runs().folder()[0], name[len(HUB_PREFIX):]
    return (Path(root) if root else runs_dir()), name


def get_run(name: str | None, root: str | Path | None = None, session_dir: str | Path | None = None) -> Run | None:
    if not name:
        return None
    root, name = run_source(name, root, session_dir)
    if root is None or not name:
        return None
    folder = (root / name).resolve()
    with _cache_lock:
        cached = _cache.get(folder)
    if cached and cached[0] == _mtime(folder):
        return cached[1]
    runs, _ = list_runs(root)
    return next((r for r in runs if r.path.resolve() == folder), None)


def _mtime(folder: Path) -> float:
    try:
        return max((folder / f).stat().st_mtime for f in ("run.json", "predictions.parquet"))
    except OSError:
        return -1.0


def all_run_choices(root: str | Path | None = None, session_dir: str | Path | None = None
                    ) -> tuple[list, list[str], list[str]]:
    """Dropdown choices of every run this visitor may open (local runs by name, their own runs and
    the Hub's as (label, value) pairs), broken-run lines, and notes about the Hub."""
    root = Path(root) if root else runs_dir()
    runs, broken = list_runs(root)
    choices: list = [r.name for r in runs]
    notes = []
    if session_dir and Path(session_dir).is_dir():
        mine, mine_broken = list_runs(session_dir)
        choices += [(f"{r.name} (yours, this session)", SESSION_PREFIX + r.name) for r in mine]
        broken += mine_broken
    hub_folder, why = hub_runs().folder()
    if hub_folder is not None:
        hub, hub_broken = list_runs(hub_folder)
        repo = hub_repo_name()
        choices += [(f"{r.name} (Hub {repo})", HUB_PREFIX + r.name) for r in hub]
        broken += hub_broken
    elif why:
        notes.append(why)
    return choices, broken, notes


def hub_repo_name() -> str:
    return os.environ.get(ENV_RUNS_REPO, "").strip()


def run_choices(root: str | Path | None = None, session_dir: str | Path | None = None, value: str | None = None):
    """-> (run dropdown, notice line); ``value`` selects that run when it is listed."""
    root = Path(root) if root else runs_dir()
    choices, broken, notes = all_run_choices(root, session_dir)
    values = [c[1] if isinstance(c, tuple) else c for c in choices]
    lines = []
    if not choices:
        lines.append(render.notice(how_to_make_a_run(root), "info"))
    for b in broken:
        lines.append(render.notice(f"Skipped a broken run: {b}", "warn"))
    for note in notes:
        lines.append(render.notice(note, "warn"))
    selected = value if value in values else (values[0] if values else None)
    return gr.update(choices=choices, value=selected), "".join(lines)


def run_checkpoint_key(run: Run, model_key: str | None, store: ModelStore) -> tuple[str | None, str]:
    """The checkpoint that can explain this run's images, or (None, why not)."""
    wanted_sha = run.info.get("checkpoint_sha256")
    if model_key and store.is_loaded(model_key) and wanted_sha:
        if store.predictor(model_key).model.info.sha256 == wanted_sha:
            return model_key, ""
    name = str(run.info.get("checkpoint_dataset") or run.info.get("checkpoint") or "")
    try:
        key = get_weights(dataset=name).key
    except KeyError:
        return None, f"the run's checkpoint {name or '?'} is not one of the dataset checkpoints; load it in the Model tab"
    if key not in {c.key for c in store.choices()}:
        return None, f"the {key} checkpoint this run used is not available here"
    return key, ""
