"""What the Video tab shows: the progress line, the per-track summaries and the clickable timeline."""
from __future__ import annotations

import io
from dataclasses import dataclass
from html import escape
from typing import Any, Sequence

import numpy as np
from PIL import Image

from poster.video import VideoAnalysis, timeline_figure
from poster.video.outputs import class_color

from ..ui import render


@dataclass(frozen=True)
class TimelineImage:
    """The timeline as pixels, and where its time axis lies in them (so a click names a moment)."""

    image: np.ndarray
    left: float  # pixel column of time 0
    right: float  # pixel column of time ``end``
    end: float

    def time_at(self, x: float) -> float:
        """The time under pixel column ``x`` (clamped to the axis)."""
        fraction = (float(x) - self.left) / max(self.right - self.left, 1e-6)
        return float(np.clip(fraction, 0.0, 1.0) * self.end)


def timeline_image(analysis: VideoAnalysis) -> TimelineImage:
    """The library's timeline figure as an RGB array, with its axis position."""
    figure = timeline_figure(analysis)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    axes = figure.axes[0]
    box = axes.get_window_extent()
    end = axes.get_xlim()[1]
    image = np.asarray(Image.open(buffer).convert("RGB"))
    return TimelineImage(image=image, left=float(box.x0), right=float(box.x1), end=float(end))


def progress_html(status: str, done: int, total: int | None, video_time: float = 0.0,
                  notes: Sequence[str] = ()) -> str:
    """The progress bar (frames analysed of about how many) or the outcome."""
    if status == "loading":
        return render.notice("Loading the model and opening the clip…")
    if status == "running":
        bar = f'<progress value="{done}" max="{max(total or done, 1)}" style="width:100%"></progress>'
        of = f" of about {total}" if total else ""
        return (f'<div class="poster-video-progress">{bar}<div>{done}{of} frames analysed · '
                f"{video_time:.1f} s into the clip</div></div>")
    if status == "writing":
        return render.notice(f"{done} frames analysed; writing the annotated video and the tables…")
    if status == "cancelled":
        return render.notice("Cancelled; nothing of this clip was kept.", "warn")
    if status == "done":
        html = render.notice(f"Done: {done} frames analysed. Click the timeline to see a moment.")
        return html + "".join(render.notice(note, "warn") for note in notes)
    return ""


def summary_html(report: dict[str, Any]) -> str:
    """One card per track: time on screen, the share of each expression, the most frequent one."""
    if not report["tracks"]:
        return render.notice("No face was found in this clip.", "warn")
    cards = []
    classes = report["classes"]
    for track in report["tracks"]:
        shares = track["share_of_time"]
        segments = "".join(
            f'<span title="{escape(name)} {shares[name]:.0%}" style="display:inline-block;height:12px;'
            f'width:{100 * shares[name]:.2f}%;background:{class_color(i)}"></span>'
            for i, name in enumerate(classes) if shares[name] > 0)
        listed = ", ".join(f"{escape(name)} {shares[name]:.0%}" for name in classes if shares[name] > 0)
        cards.append(
            f'<div class="poster-card" data-track="{track["track"]}"><b>face {track["track"]}</b>: '
            f'{track["first_seen"]:.1f}–{track["last_seen"]:.1f} s, {track["seconds_on_screen"]:.1f} s on screen; '
            f'mostly <b>{escape(track["most_frequent"])}</b>'
            f'<div style="width:100%;display:flex">{segments}</div><small>{listed}</small></div>')
    return "".join(cards)


__all__ = ["TimelineImage", "timeline_image", "progress_html", "summary_html"]
