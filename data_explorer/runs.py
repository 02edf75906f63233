"""Find and load the evaluation runs written by `python -m poster evaluate`.

A run is a folder holding ``run.json`` (facts about the run) and ``predictions.parquet`` (one row
per image). A broken run is reported next to the good ones, never fatal: one bad folder must not
hide the others from the explorer. A run names image files, and a run folder may come from
anywhere: only image files inside its dataset root or its own thumbnails folder are ever
opened, after following links.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from poster.data.datasets import thumbnail_name
from poster.data.layouts import IMAGE_SUFFIXES
from poster.evaluation.run import PREDICTIONS, RUN_JSON, THUMBNAILS

DEFAULT_RUNS_DIR = Path("runs")
REQUIRED_COLUMNS = ("path", "label", "label_name", "pred", "pred_name", "confidence", "margin",
                    "loss", "correct")
# run.json fields the explorer reads: field -> (accepted types, what the message asks for).
_NUMBER = ((int, float), "a number")
_TEXT = ((str,), "a string")
INFO_FIELDS = {"published_accuracy": _NUMBER, "accuracy": _NUMBER, "num_skipped": ((int,), "a whole number"),
               "num_images": ((int,), "a whole number"), "dataset_root": _TEXT, "checkpoint": _TEXT,
               "checkpoint_dataset": _TEXT, "checkpoint_sha256": _TEXT, "split": _TEXT, "date": _TEXT}


class RunError(Exception):
    """A run folder that cannot be loaded; the message is one line."""


@dataclass(frozen=True, eq=False)  # a DataFrame has no single truth value to compare by
class Run:
    """One loaded evaluation run."""

    name: str  # the folder relative to the runs folder, e.g. "raf-db-test"
    path: Path
    info: dict[str, Any]  # run.json
    predictions: pd.DataFrame

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.info["class_names"])

    def image_file(self, relative: str) -> Path | None:
        """The image at ``relative``: the dataset's own file when present, else the thumbnail.

        Either must lie inside its folder once links are followed, or there is none.
        """
        if not isinstance(relative, str) or not relative or "\0" in relative:
            return None
        root = self.info.get("dataset_root")
        if root:
            found = _inside(Path(root), relative)
            if found is not None:
                return found
        return _inside(self.path / THUMBNAILS, thumbnail_name(relative))


def _inside(folder: Path, relative: str) -> Path | None:
    """``folder / relative`` resolved, when it is an image file inside the resolved folder."""
    try:
        base = folder.resolve(strict=True)
        path = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if base not in path.parents or path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
        return None
    return path


@dataclass(frozen=True)
class BrokenRun:
    """A folder that looks like a run but could not be loaded, and why."""

    path: Path
    reason: str


def find_runs(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> tuple[list[Run], list[BrokenRun]]:
    """Load every run under ``runs_dir`` (any depth), sorted by name, and the broken ones."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return [], []
    folders = {p.parent for name in (RUN_JSON, PREDICTIONS) for p in runs_dir.rglob(name)}
    runs, broken = [], []
    for folder in sorted(folders):
        relative = folder.relative_to(runs_dir)
        # evaluate stages a run in a hidden folder and renames it at the end: not a run yet.
        if any(part.startswith(".") for part in relative.parts):
            continue
        try:
            runs.append(load_run(folder, name=relative.as_posix()))
        except RunError as exc:
            broken.append(BrokenRun(folder, str(exc)))
    return runs, broken


def load_run(folder: str | Path, *, name: str | None = None) -> Run:
    """Load one run folder; raises ``RunError`` when a file is missing, unreadable or inconsistent."""
    folder = Path(folder)
    info = _read_info(folder / RUN_JSON)
    predictions = _read_predictions(folder / PREDICTIONS)
    class_names = info.get("class_names")
    if not isinstance(class_names, list) or not class_names or not all(isinstance(n, str) for n in class_names):
        raise RunError(f"{folder / RUN_JSON} has no class_names list of names")
    _check_fields(info, folder / RUN_JSON)
    missing = [c for c in (*REQUIRED_COLUMNS, *(f"prob_{n}" for n in class_names)) if c not in predictions]
    if missing:
        raise RunError(f"{folder / PREDICTIONS} lacks the columns {', '.join(missing)}")
    return Run(name or folder.name, folder, info, predictions)


def _read_info(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RunError(f"missing {path.name} in {path.parent}")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"unreadable {path}: {' '.join(str(exc).split())}") from exc
    if not isinstance(info, dict):
        raise RunError(f"unreadable {path}: expected a JSON object")
    return info


def _check_fields(info: dict[str, Any], path: Path) -> None:
    """Each field the explorer reads is absent, null or of its type; else name the field."""
    for name, (types, wanted) in INFO_FIELDS.items():
        value = info.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            shown = " ".join(repr(value).split())
            shown = shown if len(shown) <= 60 else shown[:59] + "…"
            raise RunError(f"{path}: the field {name} must be {wanted}, got {shown}")


def _read_predictions(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise RunError(f"missing {path.name} in {path.parent}")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for damaged files
        raise RunError(f"unreadable {path}: {' '.join(str(exc).split())[:200]}") from exc
