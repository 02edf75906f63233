"""Time to analyse a video file, against the video's own length (the goal: real time or faster).

    python benchmarks/video_speed.py [--seconds 30] [--fps 5] [--repeats 1] [--device cpu]

Makes a ``--seconds`` long 640x480 clip at 30 frames/s with one face (the astronaut, moving), then
analyses it at ``--fps`` frames per second with POSTER++ (deterministic weights: the released
network's shapes and cost) in float32 and, where the CPU has it, the bfloat16 fast mode, timed in
turn; then writes the annotated video once. Figures are seconds per run and the ratio to the clip's
length (above 1: faster than real time). On a GPU, try ``--device cuda --fps 30 --size 1280x720``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from _common import deterministic_checkpoint, machine, time_interleaved
from poster.inference.faces import DetectorConfig, FaceDetector
from poster.inference.predictor import Predictor
from poster.video import VideoAnalyzer, write_annotated
from poster.weights.checkpoints import load_checkpoint


def make_clip(path: Path, seconds: float, size: tuple[int, int], rate: int = 30) -> Path:
    """One face moving slowly across a grey background, H.264."""
    from skimage import data

    width, height = size
    face = np.asarray(Image.fromarray(data.astronaut()[0:250, 120:320]).resize((height // 2 * 4 // 5, height // 2)))
    frames = round(seconds * rate)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.full((height, width, 3), 110, np.uint8)
            x = int((width - face.shape[1]) * (0.5 + 0.4 * np.sin(i / frames * 2 * np.pi)))
            y = (height - face.shape[0]) // 2
            image[y:y + face.shape[0], x:x + face.shape[1]] = face
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    device = torch.device(args.device)
    folder = Path(tempfile.mkdtemp(prefix="video-speed-"))
    clip = make_clip(folder / "clip.mp4", args.seconds, size)
    detector = FaceDetector(DetectorConfig(device=args.device))
    dtypes = ["float32", "bfloat16"] if device.type == "cpu" else ["float32", "float16 autocast"]
    analyzers = {}
    for name in dtypes:
        dtype = torch.bfloat16 if name == "bfloat16" else torch.float32
        model = load_checkpoint(deterministic_checkpoint("poster-v2"), device=device, dtype=dtype)
        predictor = Predictor(model, detector, autocast=name.startswith("float16"))
        analyzers[name] = VideoAnalyzer(predictor, fps=args.fps)
    results = {}

    def runner(name: str):
        def run() -> None:
            results[name] = analyzers[name].analyze(clip)
        return run

    times = time_interleaved({name: runner(name) for name in analyzers}, repeats=args.repeats, warmup=0)
    print(f"device: {args.device} ({machine()}); clip {args.size}, {args.seconds:g} s at 30 frames/s, "
          f"analysed at {args.fps:g} frames/s, one face; median of {args.repeats}")
    for name, ms in times.items():
        analysis = results[name]
        assert analysis.table["track"].nunique() >= 1
        print(f"  {name:>18}: {ms / 1000:6.1f} s for {analysis.frames_analysed} frames "
              f"({analysis.frames_analysed / (ms / 1000):5.1f} frames/s), {args.seconds / (ms / 1000):4.2f}x real time")
    start = time.perf_counter()
    write_annotated(results[dtypes[-1]], folder / "annotated.mp4")
    spent = time.perf_counter() - start
    print(f"  annotated.mp4 (every frame drawn and encoded): {spent:.1f} s, {args.seconds / spent:.2f}x real time")


if __name__ == "__main__":
    main()
