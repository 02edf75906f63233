"""`python -m poster convert IN.pth OUT.safetensors [--dataset NAME] [--arch ARCH]`."""
from __future__ import annotations

import argparse
import sys

from ..weights.checkpoints import convert_checkpoint, read_weights
from ..weights.locate import resolve
from .predict import add_checkpoint_flags


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="released checkpoint (.pth) or registry name")
    parser.add_argument("output", help="where to write the .safetensors file")
    add_checkpoint_flags(parser)


def run(args: argparse.Namespace) -> int:
    _, meta = read_weights(resolve(args.source), args.dataset, args.arch)
    if meta["dataset_reason"] != "given":
        print(f"{args.source}: dataset {meta['dataset'] or 'unknown'} ({meta['dataset_reason']})", file=sys.stderr)
    out = convert_checkpoint(args.source, args.output, dataset=args.dataset, arch=args.arch)
    print(f"wrote {out} ({meta['arch']}, {meta['dataset']}, {len(meta['class_names'])} classes: "
          f"{', '.join(meta['class_names'])})")
    return 0
