"""`python -m poster accelerate CHECKPOINT`: build the compiled package of a checkpoint ahead of time.

Runs in a process of its own (the app starts it at low priority), because compiling traces the
process's modules; see ``poster.inference.artifacts``. Prints the package's path.
"""
from __future__ import annotations

import argparse
import time

import torch

DTYPES = ("float32", "bfloat16")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint file or registry name (raf-db, poster-v1-raf-db, ...)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="number format of the package")
    parser.add_argument("--arch", default=None, help="architecture, where the file's keys do not tell it")
    parser.add_argument("--out", default=None, help="package file (default: the cache, keyed by weights, "
                                                    "architecture, format, device kind and torch version)")


def run(args: argparse.Namespace) -> int:
    from ..errors import CheckpointError
    from ..inference.artifacts import artifact_path, build_artifact, has_cpp_compiler
    from ..weights.checkpoints import load_checkpoint

    if not has_cpp_compiler():
        raise CheckpointError("compiling needs a C++ compiler (g++, c++ or clang++; or set CXX)")
    dtype = getattr(torch, args.dtype)
    model = load_checkpoint(args.checkpoint, arch=args.arch, channels_last=False)
    path = args.out or artifact_path(model, dtype)
    start = time.perf_counter()
    build_artifact(model, dtype, path)
    print(f"{path}  (built in {time.perf_counter() - start:.0f} s)")
    return 0
