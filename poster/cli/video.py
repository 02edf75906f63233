"""`python -m poster video CLIP [--out DIR] [--fps F | --every N] [--max-seconds S] [--checkpoint SRC]`.

Writes faces.parquet and faces.csv (one row per face per analysed frame), timeline.png,
annotated.mp4 (every frame, with the original sound) and summary.json into DIR.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..weights.locate import default_checkpoint
from ..weights.registry import list_weights
from .predict import add_checkpoint_flags

DEFAULT_FPS = 5.0


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="a video file (MP4, MOV, MKV, AVI, WebM, ...)")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/video/<file name>)")
    parser.add_argument("--checkpoint", default=None,
                        help=f"checkpoint file or name ({', '.join(w.key for w in list_weights())}); "
                             "default: $POSTER_CHECKPOINT or raf-db")
    add_checkpoint_flags(parser)
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument("--fps", type=_positive(float), help=f"frames analysed per second of video "
                                                                f"(default: {DEFAULT_FPS:g})")
    sampling.add_argument("--every", type=_positive(int), metavar="N",
                          help="analyse every N-th frame instead (1: every frame)")
    parser.add_argument("--max-seconds", type=_positive(float), metavar="S", help="analyse only the first S seconds")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16 is the fast mode on CPUs with bfloat16 support (logits move slightly); "
                             "default: %(default)s")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    parser.add_argument("--batch-size", type=_positive(int), default=16, help="faces per network call")
    parser.add_argument("--no-video", action="store_true", help="skip annotated.mp4 (the slowest output)")


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..devices import pick_device
    from ..inference.faces import DetectorConfig, FaceDetector
    from ..inference.predictor import Predictor
    from ..video import (VideoAnalyzer, probe, write_annotated, write_summary, write_table,
                         write_timeline)
    from ..weights.checkpoints import describe_dataset, load_checkpoint

    info = probe(args.video)  # a bad file is refused before the model loads
    device = pick_device(args.device)
    model = load_checkpoint(args.checkpoint or default_checkpoint(), device=device, dtype=getattr(torch, args.dtype),
                            dataset=args.dataset, arch=args.arch)
    predictor = Predictor(model, FaceDetector(DetectorConfig(device="cuda" if device.type == "cuda" else "cpu")))
    if predictor.model.info.dataset_reason != "given":
        print(describe_dataset(predictor.model.info), file=sys.stderr)
    fps = None if args.every else (args.fps or DEFAULT_FPS)
    analyzer = VideoAnalyzer(predictor, every=args.every, fps=fps, max_seconds=args.max_seconds,
                             batch_size=args.batch_size)
    out = args.out or Path("runs") / "video" / Path(args.video).stem
    print(f"{Path(args.video).name}: {info.width} x {info.height}, {info.fps:.3g} frames/s, "
          f"{info.duration or 0:.1f} s; analysing "
          f"{f'{fps:g} frames/s' if fps else f'every {args.every}. frame'} with {predictor.model.info.name} "
          f"on {predictor.device}", file=sys.stderr)
    with tqdm(desc="analysing", unit="frame", file=sys.stderr, dynamic_ncols=True) as bar:
        def show(step) -> None:
            bar.total = step.expected
            bar.update(step.frames - bar.n)
            bar.set_postfix_str(f"video {step.video_time:.1f} s")
        analysis = analyzer.analyze(args.video, progress=show)
    written = [*write_table(analysis, out), write_summary(analysis, out / "summary.json"),
               write_timeline(analysis, out / "timeline.png")]
    if not args.no_video:
        with tqdm(desc="annotated video", unit="frame", file=sys.stderr, dynamic_ncols=True) as bar:
            def shown(done: int, total: int | None) -> None:
                bar.total = max(total or 0, done) or None
                bar.update(done - bar.n)
            written.append(write_annotated(analysis, out / "annotated.mp4", progress=shown))
    for note in analysis.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{len(analysis.tracks)} face track(s), {len(analysis.table)} rows from {analysis.frames_analysed} frames")
    for path in written:
        print(path)
    return 0
