"""Per-frame time of the live-webcam pipeline at 640x480 with one face: detection, alignment, network.

    python benchmarks/pipeline_speed.py [--frames 30] [--dtype float32|bfloat16] [--detect-side 320]

Detection runs as the app's webcam runs it, on a copy at most ``VIDEO_MAX_SIDE`` pixels large;
``--detect-side 1280`` gives the photo settings (the full frame).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image

from _common import deterministic_checkpoint, machine
from poster import load_checkpoint
from poster.inference.faces import VIDEO_MAX_SIDE, FaceDetector, align_face
from poster.inference.transforms import to_batch


def webcam_frame() -> np.ndarray:
    """The astronaut's face area on a 640x480 canvas, like a webcam frame with one person."""
    from skimage import data

    frame = np.full((480, 640, 3), 90, np.uint8)
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((400, 400)))
    frame[40:440, 120:520] = photo
    return frame


def run(device: torch.device, frames: int, dtype: torch.dtype, detect_side: int) -> None:
    model = load_checkpoint(deterministic_checkpoint("poster-v2"), device=device, dtype=dtype)
    detector = FaceDetector()
    frame = webcam_frame()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    stages: dict[str, list[float]] = {"detection": [], "alignment": [], "network": [], "total": []}
    for i in range(frames + 3):
        t0 = time.perf_counter()
        faces = detector.detect(frame, max_side=detect_side).faces
        t1 = time.perf_counter()
        crops = [align_face(frame, f).image for f in faces]
        t2 = time.perf_counter()
        with torch.inference_mode():
            probs = torch.softmax(model(to_batch(crops).to(device)).float(), 1).cpu()
        sync()
        t3 = time.perf_counter()
        assert len(faces) == 1 and probs.shape[0] == 1
        if i >= 3:
            for name, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                stages[name].append(value * 1000)
    medians = {k: statistics.median(v) for k, v in stages.items()}
    dominant = max(("detection", "alignment", "network"), key=medians.get)
    print(f"{device.type} {str(dtype).removeprefix('torch.')}: " + ", ".join(
        f"{k} {v:.1f} ms" for k, v in medians.items()) + f"  -> {1000 / medians['total']:.1f} frames/s; "
        f"dominant stage: {dominant}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "both"], default="both")
    parser.add_argument("--detect-side", type=int, default=VIDEO_MAX_SIDE,
                        help=f"longest side detection runs at (default: the webcam's {VIDEO_MAX_SIDE})")
    args = parser.parse_args()
    print(f"CPU: {machine()}; 640x480 frame, one face, detection at {min(640, args.detect_side)} px, "
          f"medians over {args.frames} frames")
    dtypes = [torch.float32, torch.bfloat16] if args.dtype == "both" else [getattr(torch, args.dtype)]
    for dtype in dtypes:
        run(torch.device("cpu"), args.frames, dtype, args.detect_side)
    if torch.cuda.is_available():
        run(torch.device("cuda"), args.frames * 3, torch.float32, args.detect_side)
    else:
        print("no GPU: GPU figures skipped")


if __name__ == "__main__":
    main()
