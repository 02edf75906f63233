"""Median time of face detection and alignment on one webcam-sized frame, on the CPU.

    python benchmarks/detect_speed.py [--runs 20] [--width 640 --height 480] [--threads N]

The live pipeline's budget is ~150 ms per 640x480 frame including the ~60 ms network.
When other processes compete for the cores, torch's default of one thread per core can make
MTCNN's many small operations several times slower than ``--threads 1``: compare both.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from poster.inference.faces import DetectorConfig, FaceDetector, align_face  # noqa: E402


def frame(width: int, height: int) -> np.ndarray:
    """The astronaut scaled to 5/6 of the frame height, pasted in the middle of a grey frame."""
    side = height * 5 // 6
    face = np.asarray(Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.BILINEAR))
    canvas = np.full((height, width, 3), 128, np.uint8)
    top, left = (height - side) // 2, (width - side) // 2
    canvas[top:top + side, left:left + side] = face
    return canvas


def median_ms(fn, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    image = frame(args.width, args.height)
    detector = FaceDetector(DetectorConfig(device="cpu"))
    detections = detector.detect(image)
    if len(detections) != 1:
        sys.exit(f"expected one face in the benchmark frame, found {len(detections)}")
    face = detections.faces[0]

    detect = median_ms(lambda: detector.detect(image), args.runs)
    align = median_ms(lambda: align_face(image, face), args.runs)
    print(f"{args.width}x{args.height} frame, torch threads {torch.get_num_threads()}, "
          f"median of {args.runs} runs")
    print(f"detect: {detect:7.1f} ms")
    print(f"align:  {align:7.1f} ms")
    print(f"total:  {detect + align:7.1f} ms")


if __name__ == "__main__":
    main()
