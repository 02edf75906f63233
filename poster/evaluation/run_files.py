"""Read a run folder written by `python -m poster evaluate` for the command line's own reports.

The explorer has its own, more forgiving loader (``data_explorer.runs``); this one serves the
commands that take one or two run folders and stop with a one-line message when one is unusable.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import PosterError
from .run import PREDICTIONS, RUN_JSON

NEEDED_COLUMNS = ("path", "label", "pred")


class RunFileError(PosterError):
    """A run folder that cannot be read."""


def read_run(folder: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """``(run.json as a dict, predictions table)`` of a run folder."""
    folder = Path(folder)
    if not (folder / RUN_JSON).is_file() or not (folder / PREDICTIONS).is_file():
        raise RunFileError(f"{folder} is not a run folder (expected {RUN_JSON} and {PREDICTIONS})")
    try:
        info = json.loads((folder / RUN_JSON).read_text(encoding="utf-8"))
        table = pd.read_parquet(folder / PREDICTIONS)
    except Exception as exc:  # noqa: BLE001 - json and pyarrow raise many types for damaged files
        raise RunFileError(f"cannot read the run in {folder}: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(info, dict) or not isinstance(info.get("class_names"), list):
        raise RunFileError(f"{folder / RUN_JSON} has no class_names list")
    missing = [c for c in NEEDED_COLUMNS if c not in table]
    if missing:
        raise RunFileError(f"{folder / PREDICTIONS} lacks the columns {', '.join(missing)}")
    return info, table
