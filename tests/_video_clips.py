"""Tiny video clips made from the sample face photos, encoded with PyAV, for the video tests."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np
from PIL import Image

WIDTH, HEIGHT = 320, 240
FACE_SIDE = 110


def face_patch(photo: np.ndarray, box: tuple[int, int, int, int], side: int = FACE_SIDE) -> np.ndarray:
    """The part of ``photo`` inside ``box`` (x1, y1, x2, y2), resized to ``side`` pixels square."""
    x1, y1, x2, y2 = box
    return np.asarray(Image.fromarray(photo[y1:y2, x1:x2]).resize((side, side), Image.Resampling.BILINEAR))


# Squares around the faces of the two sample photos, a little larger than the face.
ASTRONAUT_FACE = (140, 20, 290, 170)
HOPPER_FACE = (130, 60, 390, 320)


def scene(patches: Sequence[tuple[np.ndarray, int, int]], size: tuple[int, int] = (WIDTH, HEIGHT)) -> np.ndarray:
    """A grey frame with each (patch, x, y) pasted at its top-left corner (clipped at the border)."""
    width, height = size
    frame = np.full((height, width, 3), 96, np.uint8)
    for patch, x, y in patches:
        h, w = patch.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
        if x1 > x0 and y1 > y0:
            frame[y0:y1, x0:x1] = patch[y0 - y:y1 - y, x0 - x:x1 - x]
    return frame


def write_clip(path: Path, frames: Sequence[np.ndarray], fps: int = 10, codec: str = "libx264",
               audio: bool = False, rotation: int = 0, times: Sequence[float] | None = None,
               faststart: bool = False) -> Path:
    """Encode RGB ``frames`` into ``path`` (optionally with a 440 Hz tone, a display rotation, or
    explicit frame times for a variable frame rate)."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if times is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=16000) if audio else None
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            seconds = len(frames) / fps
            samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds)) / 16000)).astype(np.float32)
            encode_sound(container, sound, samples)
    return path


def encode_sound(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                 samples: np.ndarray, rate: int = 16000) -> None:
    """Mux mono float ``samples`` at ``rate`` through ``stream`` in chunks of 1024."""
    for start in range(0, len(samples), 1024):
        chunk = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = rate, start
        for packet in stream.encode(chunk):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
