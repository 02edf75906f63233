"""`python -m poster COMMAND ...`: one entry point, one module per command.

Each command module exposes ``configure_parser(parser)`` and ``run(args) -> int``; its one-line
summary lives here, so modules are imported only when their command runs and ``--help`` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import PosterError

COMMANDS = {
    "predict": "poster.cli.predict",
    "evaluate": "poster.cli.evaluate",
    "convert": "poster.cli.convert",
    "download": "poster.cli.download",
    "train": "poster.cli.train",
    "report": "poster.cli.report",
    "compare": "poster.cli.compare",
    "publish": "poster.cli.publish",
    "accelerate": "poster.cli.accelerate",
    "video": "poster.cli.video",
}

SUMMARIES = {
    "predict": "detect faces in images and print their expressions",
    "evaluate": "evaluate a checkpoint on a labeled dataset and write a run for the explorer",
    "convert": "convert a released .pth checkpoint to the project's safetensors format",
    "download": "download released checkpoints and pretrained backbones, verified",
    "train": "train or fine-tune POSTER++ with the published recipe",
    "report": "summarize a run: accuracy with its interval, confusions, label errors, class order",
    "compare": "compare two runs on the images they share (intervals, McNemar's test)",
    "publish": "upload a run to a Hugging Face Hub dataset repository for the app to list",
    "accelerate": "compile a checkpoint ahead of time into a cached package that loads in milliseconds",
    "video": "follow every face of a video file: table, timeline, annotated video and summary",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The full parser for the command named first in ``argv`` (the others get only their summary)."""
    parser = argparse.ArgumentParser(prog="python -m poster", description="POSTER++ facial expression recognition")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in SUMMARIES.items():
        command_parser = sub.add_parser(name, help=summary, description=summary)
        if argv and argv[0] == name:
            importlib.import_module(COMMANDS[name]).configure_parser(command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command])
    try:
        return int(module.run(args) or 0)
    except PosterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
