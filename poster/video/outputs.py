"""What a video analysis is written as: the table (CSV, parquet), a per-track summary and a timeline."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_path, write_json_atomic
from .analysis import VideoAnalysis

# One colour per expression, the same in the timeline and the annotated video (matplotlib's tab10).
CLASS_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf"]


def class_color(index: int) -> str:
    return CLASS_COLORS[index % len(CLASS_COLORS)]


def write_table(analysis: VideoAnalysis, folder: str | Path) -> tuple[Path, Path]:
    """``faces.csv`` and ``faces.parquet`` in ``folder``: the same rows and columns."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv, parquet = folder / "faces.csv", folder / "faces.parquet"
    with atomic_path(csv) as tmp:
        analysis.table.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(parquet) as tmp:
        analysis.table.to_parquet(tmp, index=False)
    return csv, parquet


def summary(analysis: VideoAnalysis) -> dict[str, Any]:
    """Per track: first and last time, time on screen, share of time per expression, most frequent."""
    table, info = analysis.table, analysis.info
    tracks = []
    for track_id, rows in table.groupby("track", sort=True):
        counts = rows["label"].value_counts()
        shares = {name: round(float(counts.get(name, 0)) / len(rows), 4) for name in analysis.class_names}
        tracks.append({
            "track": int(track_id),
            "first_seen": round(float(rows["time"].min()), 3),
            "last_seen": round(float(rows["time"].max()), 3),
            "seconds_on_screen": round(len(rows) * analysis.interval, 3),
            "frames": int(len(rows)),
            "share_of_time": shares,
            "most_frequent": str(counts.index[0]),
            "mean_probabilities": {name: round(float(rows[name].mean()), 4) for name in analysis.class_names},
        })
    return {
        "video": Path(info.path).name, "width": info.width, "height": info.height, "rotation": info.rotation,
        "fps": round(info.fps, 3), "duration": info.duration, "seconds_analysed": round(analysis.seconds_analysed, 3),
        "frames_analysed": analysis.frames_analysed, "seconds_between_frames": round(analysis.interval, 4),
        "classes": list(analysis.class_names), "tracks": tracks, "notes": list(analysis.notes),
    }


def write_summary(analysis: VideoAnalysis, path: str | Path) -> Path:
    return write_json_atomic(path, summary(analysis))


def timeline_figure(analysis: VideoAnalysis, highlight: float | None = None):
    """One row per track: a bar per analysed frame coloured by its expression, as tall as the top
    class's probability. ``highlight`` draws a line at that time."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    table, names = analysis.table, analysis.class_names
    tracks = analysis.tracks
    figure = Figure(figsize=(10, max(2.4, 1.0 + 0.6 * len(tracks))), dpi=100)
    axes = figure.add_subplot()
    end = max(analysis.seconds_analysed, analysis.interval, 1e-3)
    width = analysis.interval or end / max(1, analysis.frames_analysed)
    for row, track_id in enumerate(tracks):
        rows = table[table["track"] == track_id]
        colors = [class_color(names.index(label)) for label in rows["label"]]
        axes.bar(rows["time"].to_numpy(), 0.8 * rows["confidence"].to_numpy(), width=width, bottom=row - 0.4,
                 color=colors, align="edge", linewidth=0)
    axes.set_yticks(range(len(tracks)), [f"face {t}" for t in tracks])
    axes.set_ylim(-0.6, max(1, len(tracks)) - 0.4)
    axes.set_xlim(0, end)
    axes.invert_yaxis()
    axes.set_xlabel("time (s); bar height = probability of the top class")
    if not tracks:
        axes.text(end / 2, 0, "no face found", ha="center", va="center")
    if highlight is not None:
        axes.axvline(highlight, color="black", linewidth=1)
    axes.legend(handles=[Patch(color=class_color(i), label=n) for i, n in enumerate(names)],
                loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    figure.tight_layout()
    return figure


def write_timeline(analysis: VideoAnalysis, path: str | Path) -> Path:
    path = Path(path)
    figure = timeline_figure(analysis)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def rows_at(analysis: VideoAnalysis, time: float) -> pd.DataFrame:
    """The rows of the analysed frame nearest ``time`` (empty when that frame has no face)."""
    table = analysis.table
    if table.empty:
        return table
    times = np.unique(table["time"].to_numpy())
    nearest = times[np.argmin(np.abs(times - time))]
    if abs(nearest - time) > max(analysis.interval, 1e-6):
        return table.iloc[0:0]
    return table[table["time"] == nearest]


__all__ = ["write_table", "summary", "write_summary", "timeline_figure", "write_timeline", "rows_at",
           "class_color", "CLASS_COLORS"]
