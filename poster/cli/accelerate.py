"""`python -m poster accelerate CHECKPOINT`: build the compiled package of a checkpoint ahead of time.

Runs in a process of its own (the app starts it at low priority), because compiling traces the
process's modules; see ``poster.inference.artifacts``. Prints the package's path.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

DTYPES = ("float32", "bfloat16")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint file or registry name (raf-db, poster-v1-raf-db, ...)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="number format of the package")
    parser.add_argument("--arch", default=None, help="architecture, where the file's keys do not tell it")
    parser.add_argument("--out", default=None, help="package file (default: the cache, keyed by weights, "
                                                    "architecture, format, device kind and torch version)")
    parser.add_argument("--idle", action="store_true",
                        help="compute only on cycles nothing else wants (Linux SCHED_IDLE; how the app starts it)")


def run_when_idle() -> bool:
    """Put this process (and the compile workers it starts) under SCHED_IDLE; whether that worked.

    Under ``nice -n 19`` alone the build still gets a small share of a core the server wants (1.5 %
    per busy server thread); a SCHED_IDLE process runs only on otherwise idle cycles. On a noisy
    2-core VM the two measured alike (``benchmarks/build_interference.py``): what a build costs the
    faces beside it there is the caches and memory it shares. Called before torch starts its
    threads, which inherit the policy.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or refused: nice alone
        return False
    return True


def run(args: argparse.Namespace) -> int:
    from ..errors import CheckpointError
    from ..inference.artifacts import artifact_path, build_artifact, has_cpp_compiler
    from ..weights.checkpoints import load_checkpoint

    if args.idle:
        run_when_idle()
    if not has_cpp_compiler():
        raise CheckpointError("compiling needs a C++ compiler (g++, c++ or clang++; or set CXX)")
    dtype = getattr(torch, args.dtype)
    model = load_checkpoint(args.checkpoint, arch=args.arch, channels_last=False)
    path = args.out or artifact_path(model, dtype)
    start = time.perf_counter()
    build_artifact(model, dtype, path)
    print(f"{path}  (built in {time.perf_counter() - start:.0f} s)")
    return 0
