"""The annotated video: every frame of the original with its faces' boxes, labels and probability
bars, and the original sound.

Frames between two analysed ones show the faces of the last analysed frame (for at most one and a
half sampling intervals), so the output keeps the source's frame rate and stays in sync with its
sound. Audio is copied as it is when MP4 takes it (AAC, MP3), otherwise re-encoded to AAC.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np
from PIL import Image, ImageDraw

from ..atomic import atomic_path
from ..errors import VideoError
from ..inference.draw import PALETTE, font as draw_font
from .analysis import BOX_COLUMNS, VideoAnalysis
from .outputs import class_color
from .reader import frame_rotation, frame_time, stream_start, upright

COPIED_AUDIO = ("aac", "mp3")
CRF = "20"  # x264 quality: boxes and text stay crisp, a minute of 640x480 is a few MB


def track_color(track: int) -> str:
    """The colour of a track's box, the same in every frame."""
    return PALETTE[track % len(PALETTE)]


def draw_frame(image: np.ndarray, rows, class_names: tuple[str, ...]) -> np.ndarray:
    """``image`` with each row's box, "face N: Label 87%" and a bar per class under the box."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    height, width = image.shape[:2]
    line = max(2, round(max(height, width) / 320))
    size = max(9, round(max(height, width) / 48))
    font, small = draw_font(size), draw_font(max(8, size * 3 // 4))
    for row in rows.itertuples(index=False):
        x1, y1, x2, y2 = (float(getattr(row, c)) for c in BOX_COLUMNS)
        color = track_color(int(row.track))
        draw.rectangle([x1, y1, x2, y2], outline=color, width=line + 1)
        text = f"face {int(row.track)}: {row.label} {float(row.confidence):.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tx = min(max(0.0, x1), max(0.0, width - (right - left) - 2 * line))
        ty = y1 - (bottom - top) - 2 * line if y1 - (bottom - top) - 2 * line >= 0 else y2 + line
        draw.rectangle([tx, ty, tx + right - left + 2 * line, ty + bottom - top + 2 * line], fill=color)
        draw.text((tx + line - left, ty + line - top), text, fill="white", font=font)
        _bars(draw, row, class_names, (x1, y1, x2, y2), line, small, width, height)
    return np.asarray(canvas)


def _bars(draw: ImageDraw.ImageDraw, row, class_names, box, line: int, font, width: int, height: int) -> None:
    """One bar per class (its probability as length), labelled with the class's first letters: under
    the face, or beside it where there is no room below."""
    x1, y1, x2, y2 = box
    step = font.size + 2
    span = max(x2 - x1, 8.0 * font.size)
    total = step * len(class_names)
    if y2 + line + 1 + total <= height:
        x, y = x1, y2 + line + 1
    else:
        x = x2 + line + 1 if x2 + line + 1 + span <= width else x1 - line - 1 - span
        y = min(max(0.0, y1), max(0.0, height - total))
    x = min(max(0.0, x), max(0.0, width - span))
    label_width = 4 * font.size
    values = row._asdict()
    for i, name in enumerate(class_names):
        p = float(values[name])
        top = y + i * step
        draw.rectangle([x, top, x + span, top + step - 1], fill=(0, 0, 0))
        draw.rectangle([x + label_width, top + 1, x + label_width + p * (span - label_width), top + step - 2],
                       fill=class_color(i))
        draw.text((x + 2, top), name[:4], fill="white", font=font)


def write_annotated(analysis: VideoAnalysis, out: str | Path,
                    progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Write ``out`` (MP4, H.264): every frame of the analysed part of the video, annotated, with its sound."""
    out = Path(out)
    info, table, names = analysis.info, analysis.table, analysis.class_names
    times = np.unique(table["time"].to_numpy()) if not table.empty else np.zeros(0)
    hold = 1.5 * analysis.interval if analysis.interval else 0.0
    end = analysis.seconds_analysed
    expected = round(end * info.fps) if info.fps else None
    try:
        with av.open(info.path) as source, atomic_path(out) as tmp:
            with av.open(str(tmp), "w", format="mp4") as target:
                _copy(source, target, analysis, times, hold, end, names, expected, progress)
    except av.FFmpegError as exc:
        raise VideoError(f"the annotated video could not be written ({' '.join(str(exc).split())[:200]})") from None
    return out


def _copy(source, target, analysis, times, hold, end, names, expected, progress) -> None:
    video_in = source.streams.video[0]
    video_in.thread_type = "AUTO"
    audio_in = source.streams.audio[0] if source.streams.audio else None
    width, height = analysis.info.width + analysis.info.width % 2, analysis.info.height + analysis.info.height % 2
    video_out = target.add_stream("libx264", rate=Fraction(analysis.info.fps or 25).limit_denominator(1001),
                                  options={"crf": CRF, "preset": "veryfast"})
    video_out.width, video_out.height, video_out.pix_fmt = width, height, "yuv420p"
    video_out.time_base = Fraction(1, 90000)
    audio_out, resampler = _audio_stream(audio_in, target)
    start = stream_start(video_in)
    index, last_pts = -1, -1
    streams = [s for s in (video_in, audio_in) if s is not None]
    for packet in source.demux(*streams):
        if packet.stream is audio_in:
            _audio(packet, audio_in, audio_out, resampler, target, start, end)
            continue
        for frame in packet.decode():
            index += 1
            time = frame_time(frame, start, index, analysis.info.fps)
            if time >= end:
                continue
            image = upright(frame.to_ndarray(format="rgb24"), frame_rotation(frame))
            if image.shape[:2] != (height, width):  # odd sizes: H.264 in 4:2:0 needs even ones
                image = np.pad(image, ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0)), mode="edge")
            shown = _shown_rows(analysis.table, times, time, hold)
            if len(shown):
                image = draw_frame(image, shown, names)
            out_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            out_frame.pts = max(last_pts + 1, round(time * 90000))  # strictly increasing, as MP4 wants
            out_frame.time_base = video_out.time_base
            last_pts = out_frame.pts
            for out_packet in video_out.encode(out_frame):
                target.mux(out_packet)
            if progress is not None:
                progress(index + 1, expected)
    for out_packet in video_out.encode():
        target.mux(out_packet)
    if resampler is not None:
        for out_packet in audio_out.encode(None):
            target.mux(out_packet)


def _shown_rows(table, times: np.ndarray, time: float, hold: float):
    """The rows of the last analysed frame at or before ``time``, if it is recent enough."""
    at = np.searchsorted(times, time + 1e-6, side="right") - 1
    if at < 0 or time - times[at] > hold:
        return table.iloc[0:0]
    return table[table["time"] == times[at]]


def _audio_stream(audio_in, target):
    if audio_in is None:
        return None, None
    if audio_in.codec_context.name in COPIED_AUDIO:
        return target.add_stream_from_template(audio_in), None
    rate = audio_in.codec_context.sample_rate or 44100
    audio_out = target.add_stream("aac", rate=rate)
    return audio_out, av.AudioResampler(format="fltp", layout="stereo", rate=rate)


def _audio(packet, audio_in, audio_out, resampler, target, start: float, end: float) -> None:
    if packet.pts is not None and packet.time_base and float(packet.pts * packet.time_base) - start >= end:
        return
    if resampler is None:
        if packet.dts is None:
            return  # the demuxer's empty flush packet
        packet.stream = audio_out
        target.mux(packet)
        return
    for frame in packet.decode():
        for resampled in resampler.resample(frame):
            for out_packet in audio_out.encode(resampled):
                target.mux(out_packet)


__all__ = ["write_annotated", "draw_frame", "track_color"]
