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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..atomic import write_json_atomic
from ..data.datasets import ImageDataset, list_images
from ..devices import pick_device
from ..errors import PosterError
from ..data.loading import close_loader
from ..models import PosterV2
from ..weights import locate
from ..weights.checkpoints import sha256_file
from .. import distributed
from ..distributed import DistInfo
from .feeding import predict_test, test_loader, train_loader
from .initial_weights import build_model
from .log import RunLog, plot_curves
from .recipe import CONFIG_FILE, TrainConfig, class_setup, train_transform
from .run_folder import (BEST_FILE, BEST_RUN, CURVES_FILE, HISTORY_FILE, LOG_FILE, describe_epoch, epoch_record,
                         load_training_state, restore_training_state, rng_state, save_best, save_training_state)
from .sharpness_aware import SAM
from .step import amp_dtype, make_optimizer, sam_step

PROGRESS_EVERY = 20  # steps between progress-bar updates (each reads the totals from the device)


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
    test_set = ImageDataset(test_listing)  # the evaluation transform, split between loader and device

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
    tests = test_loader(test_set, info, batch_size=config.eval_batch_size, workers=config.workers, device=device)
    precision = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + GradScaler"}[amp]
    log(f"{config.dataset}: {len(train_listing.items)} training and {len(test_listing.items)} test images "
        f"(skipped while listing: {len(train_listing.skipped)} train, {len(test_listing.skipped)} test), "
        f"classes {', '.join(class_names)}; {info.world_size} process(es) on {device}, {precision}, "
        f"batch {config.batch_size}, lr {optimizer.param_groups[0]['lr']:.3g}, seed {seed}")

    result = TrainResult(run_dir=run_dir)
    upcoming = None  # the next epoch's batches, when loader processes prepare them ahead
    try:
        for epoch in range(start_epoch, config.epochs):
            if upcoming is None:
                loader.sampler.set_epoch(epoch)
                upcoming = iter(loader)
            batches, upcoming = upcoming, None
            lr = optimizer.param_groups[0]["lr"]
            train_stats = _train_epoch(net, optimizer, batches, len(loader), train_set, info, device, amp, scaler,
                                       desc=f"epoch {epoch + 1}/{config.epochs}", progress=config.progress)
            if config.workers and epoch + 1 < config.epochs:
                # The workers decode the next epoch's first batches while the test set is evaluated.
                # (Without workers an iterator draws from the main generator: it waits for its epoch.)
                loader.sampler.set_epoch(epoch + 1)
                upcoming = iter(loader)
            eval_start = time.perf_counter()
            tested = predict_test(model, test_set, tests, info, device)
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
    finally:
        close_loader(loader)  # persistent workers: stop them now, not when the loader is collected
        close_loader(tests)

    if info.is_main:
        result.history = history
        result.best_epoch, result.best_accuracy = best["epoch"], (best["accuracy"] if best["epoch"] else None)
        if best["epoch"] is not None:
            result.best_checkpoint, result.best_run = run_dir / BEST_FILE, run_dir / BEST_RUN
            log(f"best test accuracy {best['accuracy']:.2f} % at epoch {best['epoch']}: "
                f"{result.best_checkpoint}, evaluation run {result.best_run}")
    return result


def _train_epoch(net: nn.Module, optimizer: SAM, batches: Iterator, steps: int, dataset: ImageDataset,
                 info: DistInfo, device: torch.device, amp: torch.dtype | None, scaler: torch.amp.GradScaler | None,
                 *, desc: str, progress: bool) -> dict[str, float]:
    """One pass over this process's shard (``steps`` batches); returns totals over all processes."""
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
    bar = tqdm(batches, total=steps, desc=desc, unit="batch", disable=not (progress and info.is_main), file=sys.stderr,
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
        correct += epoch_correct(out.logits, labels, keep)
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


def epoch_correct(logits: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """How many kept items of a batch the logits classify right, as a tensor on their device.

    A mask (``&``), not boolean indexing: ``x[keep]`` has a size only the device knows, so it makes
    the CPU wait for the GPU to finish the step before it can queue the next one.
    """
    return ((logits.argmax(1) == labels) & keep).sum()
