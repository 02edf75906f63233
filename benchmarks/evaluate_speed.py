"""Images per second of `evaluate` (loading, preprocessing, forward pass) on the CPU and any GPU.

    python benchmarks/evaluate_speed.py [--images 96] [--batch-size 32] [--workers N] [--threads N] [--dtype float32 bfloat16]

The dataset is generated: RAF-DB-sized 100x100 face photos in the ImageFolder layout; the
checkpoint holds the deterministic weights (same architecture and cost as a released one). Goals:
RAF-DB's 3,068 test images in under 3 minutes on the 2-core CPU (>= 17 img/s) and under
15 seconds on one GPU (>= 205 img/s).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import deterministic_checkpoint, machine  # also puts the project on sys.path

from poster import load_checkpoint  # noqa: E402
from poster.data.datasets import ImageDataset, list_images  # noqa: E402
from poster.data.loading import default_workers  # noqa: E402
from poster.evaluation.run import evaluate  # noqa: E402
from poster.models.poster_v2 import PosterV2Weights  # noqa: E402
from poster.data.sample_faces import write_imagefolder  # noqa: E402

RAFDB_TEST_IMAGES = 3068
GOAL_SECONDS = {"cpu": 180.0, "cuda": 15.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, help="loader processes (default: evaluate's)")
    parser.add_argument("--threads", type=int, help="torch threads on the CPU (default: torch's)")
    parser.add_argument("--dtype", nargs="+", choices=("float32", "bfloat16"), default=["float32", "bfloat16"],
                        help="precisions to measure (default: both; bfloat16 is evaluate's fast mode)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    raf = PosterV2Weights.RAF_DB.value
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"{machine()}; {args.images} images of 100x100, batch size {args.batch_size}")
    with tempfile.TemporaryDirectory() as folder:
        labels = [i % raf.num_classes for i in range(args.images)]
        write_imagefolder(Path(folder), labels, raf.folder_names)
        listing = list_images(folder, raf.class_names, raf.folder_names)
        for device, dtype in [(d, t) for d in devices for t in args.dtype]:
            model = load_checkpoint(deterministic_checkpoint("poster-v2"), device=device, dtype=getattr(torch, dtype))
            workers = args.workers if args.workers is not None else default_workers(torch.device(device))
            # Warm-up: first calls pick kernels and fill caches; not part of a long run's rate.
            evaluate(model, ImageDataset(listing.limit(args.batch_size)), batch_size=args.batch_size,
                     workers=0, progress=False)
            start, cpu_start = time.perf_counter(), time.process_time()
            table = evaluate(model, ImageDataset(listing), batch_size=args.batch_size, workers=workers,
                             progress=False)
            if device == "cuda":
                torch.cuda.synchronize()
            rate = len(table) / (time.perf_counter() - start)
            projected = RAFDB_TEST_IMAGES / rate
            verdict = "meets" if projected <= GOAL_SECONDS[device] else "misses"
            print(f"{device:4s} {dtype:8s}: {rate:7.1f} img/s with {workers} workers; RAF-DB test in {projected:6.1f} s "
                  f"({verdict} the {GOAL_SECONDS[device]:.0f} s goal)")
            if device == "cpu":
                # On a shared machine wall time depends on the neighbours; CPU time much less so.
                cpu_ms = 1000 * (time.process_time() - cpu_start) / len(table)
                idle_rate = 1000 * torch.get_num_threads() / cpu_ms
                print(f"      {cpu_ms:.0f} ms of CPU time per image in this process: about {idle_rate:.1f} img/s "
                      f"on {torch.get_num_threads()} otherwise idle cores")


if __name__ == "__main__":
    main()
