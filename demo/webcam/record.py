"""What a visitor can take from a webcam session: every result of it as a CSV table."""
from __future__ import annotations

import csv
import io
import os
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from ..serving.files import own_folder
from .live_tracking import LiveSession

CSV_KEEP_SECONDS = 10 * 60  # a download is fetched within seconds; older tables are removed

_folder_lock = threading.Lock()


def results_csv(session: LiveSession | None) -> str:
    """The session's results, one row per face and frame: time, face track, box, label and one
    probability column per class (empty where a face was not classified)."""
    rows = list(session.recorded) if isinstance(session, LiveSession) else []
    classes: list[str] = []
    for *_, names in rows:
        classes.extend(n for n in names if n not in classes)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", "track", "x1", "y1", "x2", "y2", "label", *(f"p_{n}" for n in classes)])
    for when, track, box, label, probabilities, names in rows:
        stamp = datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds")
        by_name = dict(zip(names, probabilities))
        writer.writerow([stamp, track, *(f"{v:.1f}" for v in box), label,
                         *(f"{by_name[n]:.4f}" if n in by_name else "" for n in classes)])
    return out.getvalue()


def results_file(session: LiveSession | None) -> str | None:
    """``results_csv`` written to a fresh temporary file for the download button (None: nothing yet)."""
    if not isinstance(session, LiveSession) or not session.recorded:
        return None
    folder = Path(tempfile.gettempdir()) / f"poster-webcam-results-{os.getpid()}"
    with _folder_lock:
        own_folder(folder)
        cutoff = time.time() - CSV_KEEP_SECONDS
        for old in folder.glob("*.csv"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                pass
    path = folder / f"webcam-results-{uuid.uuid4().hex[:12]}.csv"
    path.write_text(results_csv(session))
    return str(path)


__all__ = ["results_csv", "results_file"]
