"""`python -m poster convert IN.pth OUT.safetensors --dataset raf-db`."""
from __future__ import annotations

import argparse

from .checkpoints import convert_checkpoint, read_weights
from .locate import resolve


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="released checkpoint (.pth) or registry name")
    parser.add_argument("output", help="where to write the .safetensors file")
    parser.add_argument("--dataset", help="raf-db, affectnet-7, affectnet-8 or caer-s (class order)")


def run(args: argparse.Namespace) -> int:
    out = convert_checkpoint(args.source, args.output, dataset=args.dataset)
    _, meta = read_weights(resolve(out))
    print(f"wrote {out} ({meta['dataset']}, {len(meta['class_names'])} classes: {', '.join(meta['class_names'])})")
    return 0
