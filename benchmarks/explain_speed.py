"""Cost of a full explanation against the plain forward pass, on the CPU (batch 1 and 8).

A full explanation is everything ``Explainer.explain`` returns for POSTER++: Grad-CAM of both
streams at three scales, the three cross-attention maps, the query matrices and the ViT rollout,
from one forward and one backward pass. Goal: at most 2.5x the plain ``model(x)`` under
``torch.inference_mode``. The two are timed in alternation so that load from other processes
falls on both alike; the ratio uses the best of the runs, and the process CPU time as a check.

    python benchmarks/explain_speed.py [--repeats 10]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from _common import deterministic_checkpoint, machine
from poster import load_checkpoint

GOAL = 2.5


def face_batch(size: int) -> torch.Tensor:
    """``size`` real face crops: the two sample photos' faces, repeated."""
    from poster.data.sample_faces import sample_photos
    from poster.inference.faces import FaceDetector, align_face
    from poster.inference.transforms import to_batch

    photos = sample_photos()
    detector = FaceDetector()
    crops = [align_face(photo, detector.detect(photo).faces[0]).image for photo in photos]
    return to_batch([crops[i % len(crops)] for i in range(size)])


def alternating_ms(fns: dict[str, Callable[[], object]], repeats: int,
                   warmup: int = 2) -> dict[str, tuple[float, float, float]]:
    """(best wall, median wall, median process CPU) time in ms of each function, the functions
    run in turn each round.

    Other processes on a shared machine only ever add wall time, so the best of several runs is
    the steadiest figure (as ``timeit`` advises); CPU time leaves out time spent descheduled.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append((time.perf_counter() - start) * 1000)
            cpu[name].append((time.process_time() - start_cpu) * 1000)
    return {name: (min(wall[name]), statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    from explain import Explainer, summary

    print(f"CPU: {machine()}")
    model = load_checkpoint(deterministic_checkpoint("poster-v2"))
    explainer = Explainer(model)

    def plain(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    print(f"\n{'':>5} {'forward (model(x))':^26} {'explain (everything)':^26} {'ratio':^14}")
    print(f"{'batch':>5} {'best':>8} {'median':>8} {'CPU':>8} {'best':>8} {'median':>8} {'CPU':>8} "
          f"{'best':>6} {'CPU':>6}  goal <= {GOAL}x (ms per batch)")
    for batch in (1, 8):
        x = face_batch(batch)
        repeats = args.repeats if batch == 1 else max(3, args.repeats // 2)
        t = alternating_ms({"forward": lambda: plain(x), "explain": lambda: explainer.explain(x)}, repeats)
        (fb, fm, fc), (eb, em, ec) = t["forward"], t["explain"]
        verdict = "ok" if eb / fb <= GOAL else "over"
        print(f"{batch:>5} {fb:>8.0f} {fm:>8.0f} {fc:>8.0f} {eb:>8.0f} {em:>8.0f} {ec:>8.0f} "
              f"{eb / fb:>5.2f}x {ec / fc:>5.2f}x  {verdict}")

    face = explainer.explain(face_batch(1))[0]
    start = time.perf_counter()
    picture = summary(face)
    print(f"\nsummary image {picture.shape[1]}x{picture.shape[0]}: {(time.perf_counter() - start) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
