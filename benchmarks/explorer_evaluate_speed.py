"""Evaluating an uploaded set in the app against `python -m poster evaluate` on the same images.

    python benchmarks/explorer_evaluate_speed.py [--images 300] [--repeats 3] [--threads N]

Both evaluate the same generated RAF-DB-sized face crops with the reference-recipe checkpoint in
the fast mode (bfloat16 on a CPU, float32 on a GPU) and write thumbnails. The command line runs
in this process (its model loading counts, Python's start-up does not); the app's handler gets
the .zip (unpacking and checking count) with the model already loaded, as on a running server.
Timed in turn, round after round, median of each. Goal: the app takes at most 1.2x the command
line's time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import torch
from _common import deterministic_checkpoint  # also puts the project on sys.path
from _common import machine  # noqa: E402

from demo.explorer.evaluate_upload import evaluate_archive, fast_dtype  # noqa: E402
from demo.serving.store import ModelStore# noqa: E402
from poster.cli import main as cli  # noqa: E402
from poster.models.poster_v2 import PosterV2Weights  # noqa: E402
from poster.data.sample_faces import write_imagefolder  # noqa: E402

GOAL_RATIO = 1.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads on the CPU (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    raf = PosterV2Weights.RAF_DB.value
    checkpoint = deterministic_checkpoint("poster-v2")
    store = ModelStore(checkpoint_dirs=[checkpoint.parent])
    dtype = fast_dtype(store)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        data = work / "set"
        write_imagefolder(data, [i % raf.num_classes for i in range(args.images)], raf.folder_names)
        uploads = work / "uploads"
        uploads.mkdir()
        os.environ["GRADIO_TEMP_DIR"] = str(uploads)  # the handler takes archives from Gradio's folder only
        archive = uploads / "set.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(data.rglob("*.jpg")):
                zf.write(path, path.relative_to(data).as_posix())
        os.environ.pop("POSTER_RUNS_DIR", None)
        sessions: list[str] = []

        def command_line() -> None:
            out = work / "cli-run"
            cli(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
                 "--dtype", dtype, "--thumbnails", "--device", store.device])
            shutil.rmtree(out)

        def in_app() -> None:
            *_, last = evaluate_archive(str(archive), "raf-db", None, None, store=store)
            assert last.summary["num_images"] == args.images
            sessions.append(last.session_dir)
            shutil.rmtree(last.session_dir)

        print(f"{machine()}; {args.images} images of 100x100, {dtype}, {args.repeats} rounds")
        candidates = {"command line": command_line, "in the app": in_app}
        for fn in candidates.values():  # warm-up: kernels, caches, the app's model
            fn()
        times: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(args.repeats):
            for name, fn in candidates.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in medians.items():
        print(f"{name:13s}: {seconds:6.2f} s ({args.images / seconds:5.1f} img/s); rounds "
              + ", ".join(f"{t:.2f}" for t in times[name]))
    ratio = medians["in the app"] / medians["command line"]
    verdict = "meets" if ratio <= GOAL_RATIO else "misses"
    print(f"app / command line: {ratio:.2f}x ({verdict} the {GOAL_RATIO}x goal)")


if __name__ == "__main__":
    main()
