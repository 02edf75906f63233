"""Run a checkpoint over a labeled dataset and write a run folder.

A run is ``predictions.parquet`` (one row per image: label, prediction, every class probability,
confidence, margin, loss) and ``run.json`` (what was evaluated, headline metrics, what was
skipped), optionally with thumbnails; ``data_explorer`` reads it. The run is built in a hidden
folder next to RUN_DIR and renamed into place at the end, so an interrupted run leaves nothing
half-written and an earlier run is replaced only by a complete one.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Subset
from tqdm import tqdm

from ..data import metrics
from ..data.datasets import ImageDataset, Skipped
from ..data.loading import device_batch, image_loader
from ..errors import PosterError
from ..inference.precision import FLOAT32, ensure_finite, finite_logits, precision_of_weights
from ..distributed import DistInfo, all_gather_objects
from ..weights.checkpoints import CheckpointInfo
from .protocol import describe_protocol


PREDICTIONS = "predictions.parquet"
RUN_JSON = "run.json"
THUMBNAILS = "thumbs"
THUMBNAIL_SIZE = 96


def evaluate(model: torch.nn.Module, dataset: ImageDataset, *, batch_size: int = 32, workers: int = 0,
             device: str | torch.device | None = None, progress: bool = True, alone: bool = False,
             precision: str = FLOAT32, processes: DistInfo | None = None) -> pd.DataFrame:
    """Predict every image of ``dataset``; one row per image that loaded (see ``predictions_table``).

    Inputs go to ``device`` (default: the model's). Images that fail to load are added to
    ``dataset.skipped`` with the reason. ``alone``: for a model whose faces interact in a batch
    (ARM), give each image the scores it gets on its own. ``precision``: see
    ``poster.inference.precision`` (a model with converted weights runs in their format).
    ``processes``: under torchrun, each process evaluates every ``world_size``-th batch (so every
    batch holds the images it holds in one process) and every process returns the whole table.
    """
    forward = model.forward_alone if alone else model
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    precision = precision_of_weights(model) or precision
    processes = processes or DistInfo()
    source = dataset.loader_items()
    shard = Subset(source, _batches_of_rank(len(dataset), batch_size, processes))
    loader = image_loader(shard, batch_size=batch_size, workers=workers, device=device)
    known_skipped = len(dataset.skipped)
    logits, kept = [], []
    batches = iter(loader)
    try:
        with torch.inference_mode(), tqdm(total=len(dataset), unit="img", disable=not progress,
                                          file=sys.stderr) as bar:
            for images, indices, errors in batches:
                loaded = dataset.record_failures(indices.tolist(), errors)
                if loaded:
                    batch = device_batch(images, loaded, device, dtype, dataset.preprocessing)
                    # The logits stay on the device until the end: reading each batch's would make
                    # this loop wait for the GPU every batch instead of queueing the next one.
                    logits.append(finite_logits(forward, batch, precision, device)[0])
                    kept.extend(indices[loaded].tolist())
                bar.update(len(indices) * processes.world_size)
    finally:
        # Stop the worker processes now rather than when a traceback lets go of the iterator:
        # they may still be writing thumbnails into a folder the caller is about to delete.
        del batches
    width = len(dataset.class_names)
    all_logits = ensure_finite(torch.cat(logits).cpu() if logits else torch.empty(0, width), precision)
    if processes.enabled:
        all_logits, kept = _gathered(all_logits, kept, dataset, known_skipped, processes)
    items = [dataset.listing.items[i] for i in kept]
    return predictions_table(all_logits, [i.label for i in items], [i.path for i in items], dataset.class_names)


def _batches_of_rank(count: int, batch_size: int, processes: DistInfo) -> list[int]:
    """The dataset positions of every ``world_size``-th batch from ``rank`` on, in order."""
    starts = range(processes.rank * batch_size, count, batch_size * processes.world_size)
    return [i for start in starts for i in range(start, min(start + batch_size, count))]


def _gathered(logits: torch.Tensor, kept: list[int], dataset: ImageDataset, known_skipped: int,
              processes: DistInfo) -> tuple[torch.Tensor, list[int]]:
    """Every process's logits in dataset order; the images other processes skipped join ``dataset.skipped``."""
    mine = (logits.numpy(), kept, [(s.path, s.reason) for s in dataset.skipped[known_skipped:]])
    parts = all_gather_objects(mine, processes)
    del dataset.skipped[known_skipped:]
    position = {item.path: i for i, item in enumerate(dataset.listing.items)}
    skipped = sorted((s for _, _, part in parts for s in part), key=lambda s: position[s[0]])
    dataset.skipped.extend(Skipped(path, reason) for path, reason in skipped)  # as one process lists them
    order = np.argsort(np.concatenate([np.asarray(k, dtype=np.int64) for _, k, _ in parts]), kind="stable")
    all_logits = torch.from_numpy(np.concatenate([lg for lg, _, _ in parts])[order])
    all_kept = np.concatenate([np.asarray(k, dtype=np.int64) for _, k, _ in parts])[order].tolist()
    return all_logits, all_kept


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
                protocol: str = "independent", batch_size: int | None = None, world_size: int = 1) -> dict[str, Any]:
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
        "world_size": world_size,
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
