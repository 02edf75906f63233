"""Server time per live-webcam frame, for the ways a frame can be handled, timed in turn.

    python benchmarks/webcam_server.py [--frames 10] [--repeats 5]

Each call handles ``--frames`` consecutive 480x360 frames of one face (as the browser sends them)
through ``demo.webcam.live_tracking.process_frame``; figures are milliseconds per frame and results per second
the server alone could give. The app's CPU default is the last row.
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from _common import deterministic_checkpoint
from _common import machine, time_interleaved
from demo.webcam import live_tracking
from demo.serving.store import ModelStore


def frame() -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).crop((56, 0, 456, 300)).resize((480, 360)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    store = ModelStore(device="cpu", checkpoint_dirs=[deterministic_checkpoint("poster-v2").parent])
    image = frame()
    variants = {  # name: (precision, alternate, full detection every frame)
        "float32, detect + classify every frame": ("float32", False, True),
        "bfloat16, detect + classify every frame": ("bfloat16", False, True),
        "bfloat16, alternating, full-frame detection": ("bfloat16", True, True),
        "bfloat16, alternating, detection near known faces": ("bfloat16", True, False),
    }

    def runner(precision: str, alternate: bool, full: bool):
        session = live_tracking.LiveSession()

        def run() -> None:
            every = live_tracking.FULL_DETECTION_EVERY
            live_tracking.FULL_DETECTION_EVERY = 1 if full else every
            try:
                for _ in range(args.frames):
                    result = live_tracking.process_frame(image, session, "raf-db", precision, store, alternate=alternate)
                    assert len(result["faces"]) == 1
            finally:
                live_tracking.FULL_DETECTION_EVERY = every
        return run

    times = time_interleaved({name: runner(*v) for name, v in variants.items()}, repeats=args.repeats, warmup=1)
    print(f"CPU: {machine()}; 480x360 frame, one face; {args.frames} frames per call, median of {args.repeats}")
    for name, ms in times.items():
        per_frame = ms / args.frames
        print(f"{name:>50}: {per_frame:6.1f} ms per frame -> {1000 / per_frame:5.1f} results/s")


if __name__ == "__main__":
    main()
