"""`python -m poster publish RUN_DIR --repo user/poster-runs`: put a run on a Hub dataset repository."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..evaluation.publish import LICENCE_WARNING, publish_run


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run folder written by evaluate")
    parser.add_argument("--repo", required=True, help="Hub dataset repository, e.g. user/poster-runs")
    parser.add_argument("--name", help="the run's folder in the repository (default: RUN_DIR's name)")
    parser.add_argument("--images", action="store_true",
                        help="also publish the run's thumbnails (mind the dataset's licence)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")


def run(args: argparse.Namespace) -> int:
    if args.images:
        print(LICENCE_WARNING, file=sys.stderr)
    name = publish_run(args.run_dir, args.repo, images=args.images, name=args.name,
                       private=True if args.private else None)
    what = "with thumbnails" if args.images else "without images or local paths"
    print(f"published {args.run_dir} to https://huggingface.co/datasets/{args.repo}/tree/main/{name} ({what})")
    return 0
