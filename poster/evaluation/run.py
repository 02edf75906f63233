"""`python -m poster evaluate`: run a checkpoint over a labeled dataset and write a run folder.

A run is ``predictions.parquet`` (one row per image: label, prediction, every class probability,
confidence, margin, loss) and ``run.json`` (what was evaluated, headline metrics, what was
skipped), optionally with thumbnails; ``data_explorer`` reads it. The run is built in a hidden
folder next to RUN_DIR and renamed into place at the end, so an interrupted run leaves nothing
half-written and an earlier run is replaced only by a complete one.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data import metrics
from ..weights.checkpoints import CheckpointInfo, describe_dataset, load_checkpoint, with_dataset
from ..data.datasets import LAYOUTS, SPLITS, ImageDataset, list_images
from ..devices import pick_device
from ..errors import PosterError
from .protocol import (ARM_PROTOCOL_BATCH, DEFAULT_BATCH, PROTOCOLS, choose_protocol, describe_protocol,
                               infer_dataset)
from ..weights.locate import default_checkpoint
from ..cli.predict import add_checkpoint_flags
from ..weights.registry import checkpoint_weights, dataset_weights
from ..inference.transforms import eval_transform


PREDICTIONS = "predictions.parquet"
RUN_JSON = "run.json"
THUMBNAILS = "thumbs"
THUMBNAIL_SIZE = 96


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=default_checkpoint(), metavar="SRC",
                        help=f"checkpoint file or registry name ({', '.join(w.key for w in checkpoint_weights())}; "
                             "default: %(default)s)")
    add_checkpoint_flags(parser)
    parser.add_argument("--data", required=True, type=Path, metavar="DIR",
                        help="dataset folder, or a CSV file of path,label")
    parser.add_argument("--out", type=Path, metavar="RUN_DIR",
                        help="run folder to write (default: runs/<checkpoint>-<split>)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="default: %(default)s")
    parser.add_argument("--layout", choices=("auto", *LAYOUTS), default="auto", help="default: %(default)s")
    parser.add_argument("--batch-size", type=_count(1), default=None,
                        help=f"default: {DEFAULT_BATCH} ({ARM_PROTOCOL_BATCH} for ARM's published protocol)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None,
                        help="for ARM, whose scores include a mean over the batch: 'batch' (default, the "
                             f"published protocol: batches of {ARM_PROTOCOL_BATCH} in label-file order) or 'alone' "
                             "(each image on its own, as a user of single photos gets it)")
    parser.add_argument("--workers", type=_count(0), help="loader processes (default: none on CPU, up to 8 on GPU)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--thumbnails", action="store_true",
                        help=f"also save {THUMBNAIL_SIZE} px JPEG thumbnails under RUN_DIR/{THUMBNAILS}/")
    parser.add_argument("--limit", type=_count(1), metavar="N", help="evaluate only N images spread over the dataset")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16 is the fast mode (about 2-3x faster on CPUs with bfloat16 support; "
                             "logits move slightly); default: %(default)s, the published numbers")


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
    device = pick_device(args.device)
    model = load_checkpoint(args.checkpoint, device=device, dtype=getattr(torch, args.dtype),
                            dataset=args.dataset, arch=args.arch)
    info: CheckpointInfo = model.info
    if not info.classes_known:
        key, reason = infer_dataset(args.data, info.num_classes, split=args.split, layout=args.layout)
        model.info = info = with_dataset(info, key, reason)
    if info.dataset_reason != "given":
        print(describe_dataset(info), file=sys.stderr)
    folder_names = dataset_weights(info.dataset).folder_names if info.dataset else ()
    listing = list_images(args.data, info.class_names, folder_names, split=args.split, layout=args.layout)
    listing = listing.limit(args.limit)
    out = args.out or Path("runs") / f"{info.name}-{args.split}"
    print(f"{info.name}: {len(listing.items)} images from {listing.source} ({listing.layout} layout) on {device}",
          file=sys.stderr)
    if listing.layout == "imagefolder" and Path(listing.source).name != args.split:
        print(f"note: no {args.split}/ folder, used {listing.source} as the {args.split} split", file=sys.stderr)

    protocol, batch_size = choose_protocol(model, args.protocol, args.batch_size)
    if protocol != "independent":
        print(f"protocol: {describe_protocol(protocol, batch_size)}", file=sys.stderr)

    with staged_run_dir(out) as stage:
        dataset = ImageDataset(listing, transform=eval_transform(preprocessing=info.preprocessing),
                               thumbnail_dir=stage / THUMBNAILS if args.thumbnails else None,
                               thumbnail_size=THUMBNAIL_SIZE)
        workers = args.workers if args.workers is not None else default_workers(device)
        start = time.perf_counter()
        predictions = evaluate(model, dataset, batch_size=batch_size, workers=workers, device=device,
                               alone=protocol == "alone")
        summary = run_summary(predictions, info, dataset, split=args.split, device=device,
                              duration_s=time.perf_counter() - start, dtype=args.dtype,
                              protocol=protocol, batch_size=batch_size)
        write_run(stage, predictions, summary)

    print(describe(summary, out))
    return 0


def evaluate(model: torch.nn.Module, dataset: ImageDataset, *, batch_size: int = 32, workers: int = 0,
             device: str | torch.device | None = None, progress: bool = True, alone: bool = False) -> pd.DataFrame:
    """Predict every image of ``dataset``; one row per image that loaded (see ``predictions_table``).

    Inputs go to ``device`` (default: the model's). Images that fail to load are added to
    ``dataset.skipped`` with the reason. ``alone``: for a model whose faces interact in a batch
    (ARM), give each image the scores it gets on its own.
    """
    forward = model.forward_alone if alone and getattr(model, "faces_interact", False) else model
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda")
    logits, kept = [], []
    batches = iter(loader)
    try:
        with torch.inference_mode(), tqdm(total=len(dataset), unit="img", disable=not progress,
                                          file=sys.stderr) as bar:
            for images, indices, errors in batches:
                loaded = dataset.record_failures(indices.tolist(), errors)
                if loaded:
                    batch = images[loaded].to(device, dtype, non_blocking=True, memory_format=torch.channels_last)
                    logits.append(forward(batch).float().cpu())
                    kept.extend(indices[loaded].tolist())
                bar.update(len(indices))
    finally:
        # Stop the worker processes now rather than when a traceback lets go of the iterator:
        # they may still be writing thumbnails into a folder the caller is about to delete.
        del batches
    items = [dataset.listing.items[i] for i in kept]
    all_logits = torch.cat(logits) if logits else torch.empty(0, len(dataset.class_names))
    return predictions_table(all_logits, [i.label for i in items], [i.path for i in items], dataset.class_names)


def predictions_table(logits: torch.Tensor, labels: Sequence[int], paths: Sequence[str],
                      class_names: Sequence[str]) -> pd.DataFrame:
    """One row per image from raw logits: label, prediction, probabilities, confidence,
    margin (top-1 minus top-2 probability), loss (cross-entropy of the label), correct."""
    if logits.shape[1] != len(class_names):
        raise PosterError(f"the model gives {logits.shape[1]} scores but there are {len(class_names)} classes")
    log_probs = torch.log_softmax(logits.double(), dim=1).numpy()
    probs = np.exp(log_probs)
    labels = np.asarray(labels, dtype=np.int64)
    preds = probs.argmax(axis=1)
    top2 = -np.sort(-probs, axis=1)[:, :2]
    names = np.asarray(class_names, dtype=object)
    table = pd.DataFrame({
        "path": list(paths),
        "label": labels,
        "label_name": names[labels].tolist(),
        "pred": preds.astype(np.int64),
        "pred_name": names[preds].tolist(),
    })
    for k, name in enumerate(class_names):
        table[f"prob_{name}"] = probs[:, k]
    table["confidence"] = top2[:, 0]
    table["margin"] = top2[:, 0] - top2[:, 1] if len(class_names) > 1 else top2[:, 0]
    table["loss"] = -log_probs[np.arange(len(labels)), labels]
    table["correct"] = preds == labels
    return table


def run_summary(predictions: pd.DataFrame, info: CheckpointInfo, dataset: ImageDataset, *, split: str,
                device: str | torch.device, duration_s: float, dtype: str = "float32",
                protocol: str = "independent", batch_size: int | None = None) -> dict[str, Any]:
    """The facts of run.json. Accuracy, mean class accuracy and macro F1 are in percent."""
    labels, preds = predictions["label"], predictions["pred"]
    k = len(info.class_names)
    listing = dataset.listing
    return {
        "checkpoint": info.name,
        "checkpoint_sha256": info.sha256,
        "checkpoint_source": info.source,
        "checkpoint_dataset": info.dataset,
        "checkpoint_dataset_reason": info.dataset_reason,
        "checkpoint_arch": info.arch,
        "dataset": listing.source,
        "dataset_root": str(listing.root.resolve()),
        "layout": listing.layout,
        "split": split,
        "class_names": list(info.class_names),
        "num_images": len(predictions),
        "metrics_unit": "percent",
        "accuracy": 100 * metrics.accuracy(labels, preds),
        "mean_class_accuracy": 100 * metrics.mean_class_accuracy(labels, preds, k),
        "macro_f1": 100 * metrics.macro_f1(labels, preds, k),
        "published_accuracy": info.published_accuracy,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": str(device),
        "dtype": dtype,
        "protocol": protocol,
        "protocol_description": describe_protocol(protocol, batch_size or 0),
        "batch_size": batch_size,
        "colour_order": info.preprocessing.colour_order,
        "duration_s": round(duration_s, 3),
        "images_per_second": round(len(predictions) / duration_s, 2) if duration_s > 0 else None,
        "thumbnails": dataset.thumbnail_dir is not None,
        "num_skipped": len(dataset.skipped),
        "skipped": [{"path": s.path, "reason": s.reason} for s in dataset.skipped],
    }


def write_run(run_dir: str | Path, predictions: pd.DataFrame, summary: dict[str, Any]) -> Path:
    """Write predictions.parquet and run.json into ``run_dir`` (use inside ``staged_run_dir``)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    predictions.to_parquet(run_dir / PREDICTIONS, index=False)
    (run_dir / RUN_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return run_dir


def check_replaceable(run_dir: Path) -> None:
    """Refuse to overwrite a folder that is not an earlier run (``--out ~`` must not wipe a home)."""
    if run_dir.is_file() or (run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / RUN_JSON).is_file()):
        raise PosterError(f"{run_dir} exists and is not a run folder (no {RUN_JSON}); choose another --out")


@contextmanager
def staged_run_dir(run_dir: str | Path) -> Iterator[Path]:
    """A hidden folder next to ``run_dir`` that replaces it only when the block completes."""
    run_dir = Path(run_dir)
    check_replaceable(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", suffix=".partial", dir=run_dir.parent))
    try:
        yield stage
        _swap_into_place(stage, run_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _swap_into_place(stage: Path, run_dir: Path) -> None:
    if not run_dir.exists():
        stage.rename(run_dir)
        return
    old = run_dir.with_name(f".{run_dir.name}.old-{os.getpid()}")
    run_dir.rename(old)
    try:
        stage.rename(run_dir)
    except OSError:
        old.rename(run_dir)  # put the earlier run back rather than leave nothing
        raise
    shutil.rmtree(old, ignore_errors=True)


def default_workers(device: torch.device) -> int:
    """Loader processes. None on the CPU: the forward pass already keeps every core busy and a
    loader process only takes cores from it (2 cores, bfloat16: 21.9 img/s without, 16.0 with
    one), while decoding a face crop costs a few milliseconds next to a 50-100 ms forward pass."""
    if device.type == "cpu":
        return 0
    return min(8, os.cpu_count() or 1)


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
