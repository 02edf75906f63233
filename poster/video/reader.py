"""Video files in: checks, and the frames to analyse, upright, with their presentation times.

PyAV decodes (its wheel ships FFmpeg, so every common container and codec reads the same on every
machine). Times come from each frame's own timestamp, so variable frame rates are sampled
correctly; rotation metadata (phones) is applied, so faces are upright. Every problem with a file
is a ``VideoError`` with one sentence for a person.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from ..errors import VideoError

MAX_VIDEO_PIXELS = 7680 * 4320  # 8K; larger frames in a header are a damaged or hostile file
MAX_VIDEO_SECONDS = 12 * 3600  # a longer duration in a header is not a recording to analyse in one go


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself; ``width`` and ``height`` are upright (after rotation)."""

    path: str
    width: int
    height: int
    rotation: int  # degrees counter-clockwise that make decoded frames upright (from the first frame)
    fps: float  # average frame rate (0 when the file does not say)
    duration: float | None  # seconds, None when the file does not say
    codec: str
    has_audio: bool

    @property
    def frame_count(self) -> int | None:
        """Frames expected from the duration and average rate (an estimate; None when unknown)."""
        if self.duration is None or not self.fps:
            return None
        return max(1, round(self.duration * self.fps))


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: its index among all decoded frames, its time in seconds and RGB pixels."""

    index: int
    time: float
    image: np.ndarray  # (H, W, 3) uint8, upright


class Sampler:
    """Which frames to analyse: every ``every``-th frame, or ``fps`` frames per second of video time
    (by timestamps, so variable frame rates are sampled evenly); neither given: every frame."""

    def __init__(self, every: int | None = None, fps: float | None = None) -> None:
        if every is not None and fps is not None:
            raise ValueError("give every or fps, not both")
        if every is not None and every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be above 0, got {fps}")
        self.every, self.fps = every, fps
        self._next: float | None = None

    def take(self, index: int, time: float) -> bool:
        """Whether the frame with this index and time is analysed (call once per frame, in order)."""
        if self.fps is None:
            return index % (self.every or 1) == 0
        step = 1.0 / self.fps
        if self._next is None:
            self._next = time
        if time + 1e-6 < self._next:
            return False
        while self._next <= time + 1e-6:
            self._next += step
        return True

    def interval(self, info: VideoInfo) -> float:
        """Seconds between analysed frames (at the file's average rate for ``every``)."""
        if self.fps is not None:
            return 1.0 / self.fps
        return (self.every or 1) / info.fps if info.fps else 0.0

    def expected(self, info: VideoInfo, seconds: float | None) -> int | None:
        """About how many frames will be analysed in ``seconds`` of video (None when unknown)."""
        if seconds is None:
            return None
        if self.fps is not None:
            return max(1, math.ceil(seconds * self.fps))
        return max(1, math.ceil(seconds * info.fps / (self.every or 1))) if info.fps else None


def probe(path: str | Path, max_pixels: int = MAX_VIDEO_PIXELS, max_seconds: float = MAX_VIDEO_SECONDS) -> VideoInfo:
    """Open ``path`` and check what it says about itself; raises ``VideoError`` when it cannot be used."""
    with _open(path) as container:
        info = _info(path, container, max_pixels, max_seconds)
        rotation = _first_rotation(container)
    if rotation % 180:
        return replace(info, rotation=rotation, width=info.height, height=info.width)
    return replace(info, rotation=rotation)


def read_frames(path: str | Path, sampler: Sampler | None = None, until: float | None = None,
                max_pixels: int = MAX_VIDEO_PIXELS,
                max_seconds: float = MAX_VIDEO_SECONDS) -> Iterator[VideoFrame]:
    """The sampled frames of ``path`` up to ``until`` seconds (all when None), upright RGB.

    Raises ``VideoError`` for a file that is not a video, has no picture, claims an absurd size or
    duration, or whose stream breaks off (a truncated or damaged file)."""
    sampler = sampler or Sampler()
    with _open(path) as container:
        info = _info(path, container, max_pixels, max_seconds)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads: decoding is a small share of the time
        start = stream_start(stream)
        index, time = -1, 0.0
        try:
            for frame in container.decode(stream):
                index += 1
                time = frame_time(frame, start, index, info.fps)
                if until is not None and time >= until:
                    return
                if time > max_seconds:
                    raise VideoError(f"{_name(path)} plays on past {_duration(max_seconds)}; "
                                     f"videos up to {_duration(max_seconds)} are read")
                if not sampler.take(index, time):
                    continue
                if frame.width * frame.height > max_pixels:
                    raise VideoError(f"{_name(path)} has a frame of {frame.width} x {frame.height} pixels at "
                                     f"{time:.1f} s; frames up to {max_pixels / 1e6:.0f} MP are read")
                yield VideoFrame(index=index, time=time, image=upright(frame.to_ndarray(format="rgb24"),
                                                                        frame_rotation(frame)))
        except av.FFmpegError as exc:
            raise VideoError(f"{_name(path)} breaks off after {max(index, 0)} frames ({time:.1f} s): the file is "
                             f"damaged or truncated ({_one_line(exc)})") from None
        if index < 0:
            raise VideoError(f"{_name(path)} has a video stream without a single readable frame "
                             "(the file is damaged or truncated)")


def frame_at(path: str | Path, time: float, max_pixels: int = MAX_VIDEO_PIXELS) -> VideoFrame:
    """The frame shown at ``time`` seconds (the last one starting at or before it), upright RGB."""
    with _open(path) as container:
        _info(path, container, max_pixels, float("inf"))
        stream = container.streams.video[0]
        start = stream_start(stream)
        if time > 1.0 and stream.time_base:
            # Seek to the key frame before it, then decode forward; timestamps say where we are.
            container.seek(int((time + start) / stream.time_base), stream=stream, backward=True, any_frame=False)
        fps = float(stream.average_rate or 0)
        chosen = None
        try:
            for index, frame in enumerate(container.decode(stream)):
                at = frame_time(frame, start, index, fps)
                if chosen is not None and at > time + 1e-6:
                    break
                chosen = VideoFrame(index=-1, time=at, image=frame)
        except av.FFmpegError:
            pass  # the frames read so far stand
        if chosen is None:
            raise VideoError(f"{_name(path)} has no frame at {time:.2f} s")
        image = upright(chosen.image.to_ndarray(format="rgb24"), frame_rotation(chosen.image))
        return VideoFrame(index=-1, time=chosen.time, image=image)


def _open(path: str | Path) -> "av.container.InputContainer":
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{_name(path)} is not a file")
    if path.stat().st_size == 0:
        raise VideoError(f"{_name(path)} is empty")
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        what = _describe(path)
        if what:
            raise VideoError(f"{_name(path)} is {what}, not a video") from None
        raise VideoError(f"{_name(path)} cannot be read as a video: it is not a video file, or it is damaged "
                         f"or truncated ({_one_line(exc)})") from None
    except (OSError, UnicodeError, ValueError) as exc:
        raise VideoError(f"{_name(path)} cannot be opened ({_one_line(exc)})") from None


def _info(path: str | Path, container: "av.container.InputContainer", max_pixels: int,
          max_seconds: float) -> VideoInfo:
    if not container.streams.video:
        audio = bool(container.streams.audio)
        container.close()
        if audio:
            raise VideoError(f"{_name(path)} has sound but no picture: there are no faces to see")
        raise VideoError(f"{_name(path)} holds no stream FFmpeg can read: the file is damaged or truncated")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        container.close()
        raise VideoError(f"{_name(path)} has a video stream without a picture size (the file is damaged)")
    if width * height > max_pixels:
        container.close()
        raise VideoError(f"{_name(path)} says its frames are {width} x {height} pixels "
                         f"({width * height / 1e6:.0f} MP); videos up to {max_pixels / 1e6:.0f} MP "
                         "per frame (8K) are read")
    duration = _stream_duration(stream, container)
    if duration is not None and duration > max_seconds:
        container.close()
        raise VideoError(f"{_name(path)} says it lasts {_duration(duration)}; videos up to "
                         f"{_duration(max_seconds)} are read (cut it, or the header is damaged)")
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(path=str(path), width=width, height=height, rotation=0,
                     fps=float(rate) if rate else 0.0, duration=duration, codec=stream.codec_context.name,
                     has_audio=bool(container.streams.audio))


def _stream_duration(stream, container) -> float | None:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _first_rotation(container) -> int:
    """The rotation of the first frame (FFmpeg hands each frame the stream's display matrix)."""
    try:
        for frame in container.decode(container.streams.video[0]):
            return frame_rotation(frame)
    except av.FFmpegError:
        pass  # read_frames says where the stream breaks
    return 0


def frame_rotation(frame) -> int:
    """Degrees counter-clockwise that make the frame upright: 0, 90, 180 or 270."""
    return int(round((frame.rotation or 0) / 90.0)) % 4 * 90


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """``image`` turned ``rotation`` degrees counter-clockwise."""
    return np.ascontiguousarray(np.rot90(image, k=rotation // 90)) if rotation else image


def stream_start(stream) -> float:
    """The stream's first timestamp in seconds (frame times count from it)."""
    return float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0


def frame_time(frame, start: float, index: int, fps: float) -> float:
    """A frame's time in seconds from the stream's start (from its index where it has no timestamp)."""
    if frame.time is not None:
        return max(0.0, frame.time - start)
    return index / fps if fps else float(index)


def _describe(path: Path) -> str:
    """What a file that FFmpeg cannot open seems to be ("" when it is not recognisable)."""
    with path.open("rb") as handle:
        head = handle.read(512)
    text = head.decode("utf-8", "replace").rstrip("\ufffd")
    if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "a text file"
    return ""


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _name(path: str | Path) -> str:
    name = Path(path).name
    return name if len(name) <= 80 else name[:77] + "..."


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


__all__ = ["VideoInfo", "VideoFrame", "Sampler", "probe", "read_frames", "frame_at", "frame_rotation", "upright", "stream_start",
           "frame_time", "MAX_VIDEO_PIXELS", "MAX_VIDEO_SECONDS"]
