"""What a package build costs the faces being classified beside it, by the priority it runs at.

    python benchmarks/build_interference.py [--seconds 60] [--rate 8]

One face is classified ``--rate`` times a second with the fused float32 POSTER++ (as the live webcam
does on a 2-core CPU) for ``--seconds``: first alone, then while ``python -m poster accelerate``
builds the model's package under ``nice -n 19`` only, then under ``nice -n 19`` and SCHED_IDLE
(``--idle``, how the app starts it). Prints the median, 95th percentile and worst time per face of
each, and how far the build got. Each build starts from an empty folder, so each compiles from scratch.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import deterministic_checkpoint, machine
from poster import load_checkpoint
from poster.inference.accelerate import fast_copy
from poster.inference.artifacts import has_cpp_compiler

ROOT = Path(__file__).resolve().parents[1]


def classify_for(model, seconds: float, rate: float) -> list[float]:
    """Milliseconds per face, one face every 1/rate s (or back to back when a face takes longer)."""
    x = torch.randn(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    times, end = [], time.monotonic() + seconds
    with torch.inference_mode():
        while time.monotonic() < end:
            start = time.perf_counter()
            model.forward_alone(x)
            took = time.perf_counter() - start
            times.append(took * 1000)
            time.sleep(max(0.0, 1 / rate - took))
    return times


def line(name: str, times: list[float], extra: str = "") -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (f"  {name:28s} median {statistics.median(times):6.1f} ms · p95 {p95:6.1f} ms · worst {max(times):6.1f} ms"
            f" · {len(times)} faces{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=8.0, help="faces per second asked for")
    args = parser.parse_args()
    print(machine())
    if not has_cpp_compiler():
        print("no C++ compiler: no package can be built here")
        return
    checkpoint = deterministic_checkpoint("poster-v2")
    model = fast_copy(load_checkpoint(checkpoint))
    classify_for(model, 3, args.rate)  # warm-up: packed weights made
    print(line("alone", classify_for(model, args.seconds, args.rate)))
    nice = [shutil.which("nice"), "-n", "19"] if shutil.which("nice") else []
    for name, idle in (("build under nice 19", []), ("build under nice 19 + idle", ["--idle"])):
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "package.pt2"
            command = [*nice, sys.executable, "-m", "poster", "accelerate", str(checkpoint), "--out", str(out), *idle]
            # A process group of its own (not a session: that would be a scheduler autogroup of its
            # own, where nice means nothing against this process), so its compile workers end with it.
            build = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     process_group=0)
            started = time.monotonic()
            times = classify_for(model, args.seconds, args.rate)
            state = (f"built in {time.monotonic() - started:.0f} s" if build.poll() == 0 and out.exists()
                     else "still building")
            if build.poll() is None:
                os.killpg(build.pid, signal.SIGKILL)
            build.wait()
        print(line(name, times, f" · package {state} when the window closed"))


if __name__ == "__main__":
    main()
