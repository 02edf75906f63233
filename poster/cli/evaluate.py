"""`python -m poster evaluate`: run a checkpoint over a labeled dataset and write a run folder."""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..data.datasets import SPLITS, ImageDataset, list_images
from ..data.layouts import LAYOUTS
from ..data.loading import default_workers
from .. import distributed
from ..devices import pick_device
from ..inference.accelerate import fast_copy
from ..evaluation.protocol import (ARM_PROTOCOL_BATCH, DEFAULT_BATCH, GPU_BATCH, PROTOCOLS, choose_protocol,
                                   describe_protocol, infer_dataset)
from ..evaluation.run import (RUN_JSON, THUMBNAIL_SIZE, THUMBNAILS, check_replaceable, evaluate,
                              run_summary, staged_run_dir, write_run)
from ..inference.precision import BFLOAT16, DTYPES, PRECISIONS, resolve_precision
from ..weights.checkpoints import CheckpointInfo, describe_dataset, load_checkpoint, with_dataset
from ..weights.locate import default_checkpoint
from ..weights.registry import get_weights, list_weights
from .predict import add_checkpoint_flags


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=default_checkpoint(), metavar="SRC",
                        help=f"checkpoint file or registry name ({', '.join(w.key for w in list_weights())}; "
                             "default: %(default)s)")
    add_checkpoint_flags(parser)
    parser.add_argument("--data", required=True, type=Path, metavar="DIR",
                        help="dataset folder, or a CSV file of path,label")
    parser.add_argument("--out", type=Path, metavar="RUN_DIR",
                        help="run folder to write (default: runs/<checkpoint>-<split>)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="default: %(default)s")
    parser.add_argument("--layout", choices=("auto", *LAYOUTS), default="auto", help="default: %(default)s")
    parser.add_argument("--batch-size", type=_count(1), default=None,
                        help=f"default: {DEFAULT_BATCH}, {GPU_BATCH} on a GPU ({ARM_PROTOCOL_BATCH} for ARM's "
                             "published protocol)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None,
                        help="for ARM, whose scores include a mean over the batch: 'batch' (default, the "
                             f"published protocol: batches of {ARM_PROTOCOL_BATCH} in label-file order) or 'alone' "
                             "(each image on its own, as a user of single photos gets it)")
    parser.add_argument("--workers", type=_count(0),
                        help="loader processes (default: none on CPU; on a GPU all cores but two, at most 12)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--thumbnails", action="store_true",
                        help=f"also save {THUMBNAIL_SIZE} px JPEG thumbnails under RUN_DIR/{THUMBNAILS}/")
    parser.add_argument("--limit", type=_count(1), metavar="N", help="evaluate only N images spread over the dataset")
    parser.add_argument("--dtype", choices=PRECISIONS, default=None,
                        help="default: bfloat16 where the device runs it natively (logits move slightly), else "
                             "float32; float16 batches that overflow are redone in float32; exact is float32 "
                             "without TF32 on GPUs (see poster.inference.precision)")


def _count(minimum: int):
    """An argparse type: an integer of at least ``minimum``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    parse.__name__ = "integer"  # argparse names the type in its message for non-numbers
    return parse


def run(args: argparse.Namespace) -> int:
    """Evaluate; under ``torchrun`` each process takes its share of the batches and rank 0 writes the run."""
    device_type = pick_device(args.device).type
    processes = distributed.setup(device_type)
    try:
        return _evaluate(args, processes)
    finally:
        distributed.teardown()


def _evaluate(args: argparse.Namespace, processes: distributed.DistInfo) -> int:
    device = pick_device(args.device, local_rank=processes.local_rank if processes.enabled else None)
    precision = resolve_precision(args.dtype, device)
    # bfloat16 converts the weights (faster than autocast, on CPUs by far); the others autocast float32.
    # The same fast copy the app evaluates with (fused for the CPU), so both give the same predictions.
    weights_dtype = DTYPES[BFLOAT16] if precision == BFLOAT16 else torch.float32
    model = fast_copy(load_checkpoint(args.checkpoint, device=device, dataset=args.dataset, arch=args.arch),
                      weights_dtype)
    info: CheckpointInfo = model.info
    say = print if processes.is_main else _quiet
    if not info.classes_known:
        key, reason = infer_dataset(args.data, info.num_classes, split=args.split, layout=args.layout)
        model.info = info = with_dataset(info, key, reason)
    if info.dataset_reason != "given":
        say(describe_dataset(info), file=sys.stderr)
    folder_names = get_weights(dataset=info.dataset).folder_names if info.dataset else ()
    listing = list_images(args.data, info.class_names, folder_names, split=args.split, layout=args.layout)
    listing = listing.limit(args.limit)
    out = args.out or Path("runs") / f"{info.name}-{args.split}"
    check_replaceable(out)  # every process, so that they stop together
    processes_note = f" in {processes.world_size} processes" if processes.enabled else ""
    say(f"{info.name}: {len(listing.items)} images from {listing.source} ({listing.layout} layout) on {device}"
        f"{processes_note}, {precision}", file=sys.stderr)
    if listing.layout == "imagefolder" and Path(listing.source).name != args.split:
        say(f"note: no {args.split}/ folder, used {listing.source} as the {args.split} split", file=sys.stderr)

    protocol, batch_size = choose_protocol(model, args.protocol, args.batch_size, device)
    if protocol != "independent":
        say(f"protocol: {describe_protocol(protocol, batch_size)}", file=sys.stderr)

    with staged_run_dir(out) if processes.is_main else contextlib.nullcontext() as stage:
        stage = distributed.broadcast_object(stage, processes)  # every process writes its thumbnails there
        dataset = ImageDataset(listing, preprocessing=info.preprocessing,
                               thumbnail_dir=stage / THUMBNAILS if args.thumbnails else None,
                               thumbnail_size=THUMBNAIL_SIZE)
        workers = args.workers if args.workers is not None else default_workers(device)
        start = time.perf_counter()
        predictions = evaluate(model, dataset, batch_size=batch_size, workers=workers, device=device,
                               alone=protocol == "alone", precision=precision, processes=processes,
                               progress=processes.is_main)
        if processes.is_main:
            summary = run_summary(predictions, info, dataset, split=args.split, device=device,
                                  duration_s=time.perf_counter() - start, dtype=precision,
                                  protocol=protocol, batch_size=batch_size, world_size=processes.world_size)
            write_run(stage, predictions, summary)
    if processes.is_main:
        print(describe(summary, out))
    return 0


def _quiet(*args: Any, **kwargs: Any) -> None:
    """``print`` for the processes other than rank 0, which leave the terminal to it."""


def describe(summary: dict[str, Any], out: Path) -> str:
    """A few lines for the terminal: accuracy next to the published figure, what was skipped."""
    published = summary["published_accuracy"]
    versus = f" (published {published:.2f} %)" if published is not None else ""
    lines = [
        f"accuracy {summary['accuracy']:.2f} %{versus}, mean class accuracy {summary['mean_class_accuracy']:.2f} %, "
        f"macro F1 {summary['macro_f1']:.2f} % on {summary['num_images']} images "
        f"({summary['images_per_second'] or 0:.1f} img/s)",
    ]
    skipped = summary["skipped"]
    if skipped:
        lines.append(f"skipped {len(skipped)}:")
        lines += [f"  {s['path']}: {s['reason']}" for s in skipped[:10]]
        if len(skipped) > 10:
            lines.append(f"  ... and {len(skipped) - 10} more (see {out / RUN_JSON})")
    lines.append(f"wrote {out}")
    return "\n".join(lines)
