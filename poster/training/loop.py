"""Training POSTER++ with the published recipe (the authors' ``main.py``), on one or many processes.

The recipe: SAM (rho 0.05) around Adam, exponential learning-rate decay 0.98 per epoch, batch 144,
200 epochs, cross-entropy; resize 224, horizontal flip, normalize, random erasing; class-balanced
sampling for AffectNet; the landmark branch frozen (values in ``poster.training.recipe``). A run folder holds:

    train.json        the resolved settings (what ``--resume`` reads back)
    train.log         one line per epoch, and notes
    history.json      per-epoch metrics; curves.png plots them
    last.pt           training state after the last finished epoch (model, optimizer, scheduler, RNG)
    best.safetensors  the weights with the best test accuracy, in the project's checkpoint format
    best-test/        the evaluation run of best.safetensors, where the data explorer finds it

Under ``torchrun`` every process runs the same code; only rank 0 writes.
"""
from __future__ import annotations

import math
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from ..atomic import write_json_atomic
from ..data.datasets import ImageDataset, list_images
from ..devices import pick_device
from ..errors import PosterError
from ..evaluation.run import predictions_table
from ..inference.transforms import eval_transform
from ..models import PosterV2
from ..weights import locate
from ..weights.checkpoints import sha256_file
from .. import distributed
from ..distributed import DistInfo
from .sampler import BalancedSampler
from .initial_weights import build_model
from .log import RunLog, plot_curves
from .recipe import CONFIG_FILE, TrainConfig, class_setup, train_transform
from .run_folder import (BEST_FILE, BEST_RUN, CURVES_FILE, HISTORY_FILE, LOG_FILE, describe_epoch, epoch_record,
                         load_training_state, restore_training_state, rng_state, save_best, save_training_state)
from .sharpness_aware import SAM
from .step import amp_dtype, make_optimizer, sam_step

PROGRESS_EVERY = 20  # steps between progress-bar updates (each reads the totals from the device)


# --- Data ---------------------------------------------------------------------------------

def train_loader(dataset: ImageDataset, config: TrainConfig, info: DistInfo, seed: int,
                 device: torch.device) -> DataLoader:
    """Shuffled (or class-balanced) batches of this process's shard; call ``sampler.set_epoch``."""
    if config.batch_size % info.world_size:
        raise PosterError(f"batch size {config.batch_size} does not split evenly over {info.world_size} processes")
    if config.balanced:
        labels = [item.label for item in dataset.listing.items]
        sampler = BalancedSampler(labels, num_replicas=info.world_size, rank=info.rank, seed=seed)
    else:
        sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed)
    # Workers are restarted each epoch: their seeds then come from the main RNG, which last.pt
    # saves, so a resumed run draws the same augmentation as an uninterrupted one.
    return DataLoader(dataset, batch_size=config.batch_size // info.world_size, sampler=sampler,
                      num_workers=config.workers, pin_memory=device.type == "cuda", drop_last=False)


# --- Evaluation ---------------------------------------------------------------------------

def predict_test(model: PosterV2, dataset: ImageDataset, info: DistInfo, *, batch_size: int, workers: int,
                 device: torch.device) -> tuple[pd.DataFrame, torch.Tensor] | None:
    """Float32 predictions on every test image, sharded over processes: on rank 0 the predictions
    table (``poster.evaluation.run.predictions_table``) and the logits in the same order, None elsewhere.

    Float32 on purpose: the run written for the best epoch then shows exactly what
    ``load_checkpoint`` of the saved file gives.
    """
    dataset.skipped = list(dataset.listing.skipped)  # this epoch's load failures only
    shard = Subset(dataset, range(info.rank, len(dataset), info.world_size))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda")
    kept: list[int] = []
    logits: list[np.ndarray] = []
    failed: list[tuple[int, str]] = []
    model.eval()
    with torch.inference_mode():
        for images, indices, errors in loader:
            ok = [i for i, error in enumerate(errors) if not error]
            failed += [(int(indices[i]), error) for i, error in enumerate(errors) if error]
            if ok:
                batch = images[ok].to(device, non_blocking=True)
                logits.append(model(batch).float().cpu().numpy())
                kept += indices[ok].tolist()
    width = len(dataset.class_names)
    local = (kept, np.concatenate(logits) if logits else np.zeros((0, width), np.float32), failed)
    parts = distributed.all_gather_objects(local, info)
    if not info.is_main:
        return None
    all_indices = np.concatenate([np.asarray(p[0], dtype=np.int64) for p in parts])
    order = np.argsort(all_indices)  # back to dataset order, whatever the sharding
    all_indices = all_indices[order]
    all_logits = torch.from_numpy(np.concatenate([p[1] for p in parts])[order])
    for index, error in sorted(f for p in parts for f in p[2]):
        dataset.record_failures([index], [error])
    items = [dataset.listing.items[i] for i in all_indices]
    table = predictions_table(all_logits, [i.label for i in items], [i.path for i in items], dataset.class_names)
    return table, all_logits


# --- The run ------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """What a run did. On ranks other than 0 only ``run_dir`` and ``epochs_run`` are filled."""

    run_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_accuracy: float | None = None
    best_checkpoint: Path | None = None
    best_run: Path | None = None
    test_logits: torch.Tensor | None = None  # float32 logits of the last evaluation, in dataset order
    epochs_run: int = 0


def run_training(config: TrainConfig, *, resume: bool = False, info: DistInfo | None = None) -> TrainResult:
    """Train (or continue) the run in ``config.out``; every process of a torchrun job calls this."""
    info = info or DistInfo()
    device = pick_device(config.device, local_rank=info.local_rank if info.enabled else None)
    amp = amp_dtype(config.precision, device)
    run_dir = Path(config.out)
    state = load_training_state(run_dir) if resume else None
    if not resume and run_dir.exists() and any(run_dir.iterdir()):
        raise PosterError(f"{run_dir} already exists and is not empty: use --resume {run_dir} or another --out")
    if config.seed is None:
        config.seed = distributed.broadcast_object(random.SystemRandom().randrange(2**31), info)
    seed = int(config.seed)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    distributed.barrier(info)
    log = RunLog(run_dir / LOG_FILE if info.is_main else None)

    class_names, folder_names, dataset_key = class_setup(config)
    train_listing = list_images(config.data, class_names, folder_names, split="train", layout=config.layout)
    test_listing = list_images(config.test_data or config.data, class_names, folder_names, split="test",
                               layout=config.layout)
    train_set = ImageDataset(train_listing, train_transform(config))
    test_set = ImageDataset(test_listing, eval_transform())

    torch.manual_seed(seed)  # the same fresh weights on every process
    # A resumed run takes every weight from last.pt: the start files need not be there any more.
    model = PosterV2(len(class_names)) if state else build_model(config, class_names, log)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    optimizer, scheduler = make_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None

    history: list[dict[str, Any]] = []
    best = {"epoch": None, "accuracy": -math.inf}
    start_epoch = 0
    source_sha256 = sha256_file(locate.resolve(config.init)) if config.init and not state and info.is_main else ""
    if state is not None:
        restore_training_state(state, model, optimizer, scheduler, scaler, info, device, seed, log)
        history, best, start_epoch = list(state["history"]), dict(state["best"]), int(state["epoch"])
        source_sha256 = state.get("source_sha256", "")
        log(f"resuming {run_dir} after epoch {start_epoch} of {config.epochs}")
    else:
        torch.manual_seed(seed + 1 + info.rank)  # augmentation differs between processes
    if info.is_main:
        write_json_atomic(run_dir / CONFIG_FILE, config.to_dict())

    net: nn.Module = model
    # No SyncBatchNorm: each process normalises with its own batch statistics, as the original
    # DataParallel training did on each GPU.
    if info.enabled:
        # The class token's gradient comes out of expand()'s backward with odd strides; DDP warns
        # that copying its 768 values into the bucket "may impair performance". It does not, measurably.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    loader = train_loader(train_set, config, info, seed, device)
    precision = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + GradScaler"}[amp]
    log(f"{config.dataset}: {len(train_listing.items)} training and {len(test_listing.items)} test images "
        f"(skipped while listing: {len(train_listing.skipped)} train, {len(test_listing.skipped)} test), "
        f"classes {', '.join(class_names)}; {info.world_size} process(es) on {device}, {precision}, "
        f"batch {config.batch_size}, lr {optimizer.param_groups[0]['lr']:.3g}, seed {seed}")

    result = TrainResult(run_dir=run_dir)
    for epoch in range(start_epoch, config.epochs):
        loader.sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        train_stats = _train_epoch(net, optimizer, loader, train_set, info, device, amp, scaler,
                                   desc=f"epoch {epoch + 1}/{config.epochs}", progress=config.progress)
        eval_start = time.perf_counter()
        tested = predict_test(model, test_set, info, batch_size=config.eval_batch_size,
                              workers=config.workers, device=device)
        eval_seconds = time.perf_counter() - eval_start
        scheduler.step()
        result.epochs_run += 1
        if tested is not None:
            predictions, result.test_logits = tested
            record = epoch_record(epoch + 1, lr, train_stats, predictions, len(class_names), eval_seconds)
            history.append(record)
            if record["test_accuracy"] > best["accuracy"]:
                best = {"epoch": epoch + 1, "accuracy": record["test_accuracy"]}
                save_best(model, predictions, test_set, config, dataset_key, class_names, epoch + 1,
                           record["test_accuracy"], device, eval_seconds, source_sha256)
            write_json_atomic(run_dir / HISTORY_FILE, history)
            plot_curves(history, run_dir / CURVES_FILE)
            log(describe_epoch(record, best, len(train_set.skipped), len(test_set.skipped)))
        rngs = distributed.all_gather_objects(rng_state(device), info)
        if info.is_main:
            save_training_state(run_dir, epoch=epoch + 1, model=model, optimizer=optimizer, scheduler=scheduler,
                                scaler=scaler, rngs=rngs, history=history, best=best, config=config,
                                source_sha256=source_sha256)
        distributed.barrier(info)

    if info.is_main:
        result.history = history
        result.best_epoch, result.best_accuracy = best["epoch"], (best["accuracy"] if best["epoch"] else None)
        if best["epoch"] is not None:
            result.best_checkpoint, result.best_run = run_dir / BEST_FILE, run_dir / BEST_RUN
            log(f"best test accuracy {best['accuracy']:.2f} % at epoch {best['epoch']}: "
                f"{result.best_checkpoint}, evaluation run {result.best_run}")
    return result


def _train_epoch(net: nn.Module, optimizer: SAM, loader: DataLoader, dataset: ImageDataset, info: DistInfo,
                 device: torch.device, amp: torch.dtype | None, scaler: torch.amp.GradScaler | None, *,
                 desc: str, progress: bool) -> dict[str, float]:
    """One pass over this process's shard; returns totals over all processes."""
    net.train()  # PosterV2.train keeps the frozen landmark branch in eval mode
    dataset.skipped = list(dataset.listing.skipped)  # this epoch's load failures only
    # Totals stay on the device: reading them each step would make the CPU wait for the GPU every
    # step (two synchronisations per step); the progress bar reads them every PROGRESS_EVERY steps.
    total_dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    loss_sum = torch.zeros((), dtype=total_dtype, device=device)
    correct = torch.zeros((), dtype=total_dtype, device=device)
    seen = 0.0
    skipped_steps = 0
    pinned = device.type == "cuda"
    memory = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, unit="batch", disable=not (progress and info.is_main), file=sys.stderr,
               dynamic_ncols=True, leave=True)
    for step, (images, indices, errors) in enumerate(bar, 1):
        loaded = dataset.record_failures(indices.tolist(), errors)
        keep = torch.zeros(len(indices), dtype=torch.bool)
        keep[loaded] = True
        labels = torch.tensor([dataset.listing.items[int(i)].label for i in indices])
        if pinned:  # page-locked, so that the copies below do not wait
            keep, labels = keep.pin_memory(), labels.pin_memory()
        keep, labels = keep.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        images = images.to(device, non_blocking=True, memory_format=memory)
        out = sam_step(net, optimizer, images, labels, keep=keep, amp=amp, scaler=scaler)
        skipped_steps += not out.applied  # only an fp16 scaler's step reads the device here
        n = float(len(loaded))
        loss_sum += out.loss.to(total_dtype) * n
        correct += (out.logits.argmax(1) == labels)[keep].sum()
        seen += n
        if not bar.disable and step % PROGRESS_EVERY == 0:
            elapsed = time.perf_counter() - start
            bar.set_postfix(loss=f"{float(loss_sum) / max(seen, 1):.4f}", acc=f"{100 * float(correct) / max(seen, 1):.2f}%",
                            img_s=f"{seen * info.world_size / max(elapsed, 1e-9):.3g}")
    bar.close()
    totals = [float(loss_sum), float(correct), seen, skipped_steps]  # waits for the last step
    elapsed = time.perf_counter() - start
    loss_sum, correct, seen, skipped_steps = distributed.all_reduce_sum(totals, info, device)
    return {"loss": loss_sum / max(seen, 1), "accuracy": 100 * correct / max(seen, 1), "images": seen,
            "seconds": elapsed, "images_per_second": seen / max(elapsed, 1e-9), "skipped_steps": skipped_steps}
