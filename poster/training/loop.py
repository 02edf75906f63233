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

import json
import math
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from ..atomic import atomic_path, write_json_atomic
from ..data import metrics
from ..data.datasets import ImageDataset, list_images
from ..devices import pick_device
from ..errors import CheckpointError, PosterError
from ..evaluation.run import predictions_table, run_summary, staged_run_dir, write_run
from ..inference.transforms import eval_transform
from ..models import PosterV2
from ..weights import locate
from ..weights.checkpoints import CheckpointInfo, load_pretrained_backbones, read_weights, save_safetensors, sha256_file
from ..weights.registry import canonical_class
from . import distributed
from .distributed import BalancedSampler, DistInfo
from .log import RunLog, plot_curves
from .recipe import CONFIG_FILE, TrainConfig, class_setup, train_transform
from .sharpness_aware import SAM

LOG_FILE = "train.log"
HISTORY_FILE = "history.json"
CURVES_FILE = "curves.png"
STATE_FILE = "last.pt"
BEST_FILE = "best.safetensors"
BEST_RUN = "best-test"
STATE_FORMAT = "poster-v2-training-state"


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


# --- Model --------------------------------------------------------------------------------

def build_model(config: TrainConfig, class_names: Sequence[str],
                log: Callable[[str], None] | None = None) -> PosterV2:
    """POSTER++ for ``class_names``: fine-tuned from ``config.init``, or pretrained backbones."""
    say = log or (lambda message: None)
    model = PosterV2(len(class_names))
    if config.init:
        path = locate.resolve(config.init)
        state, meta = read_weights(path, config.init_dataset)
        state, note = fit_head(state, meta["class_names"], class_names)
        missing, unexpected = model.load_state_dict(state, strict=False)
        head = {"transformer.head.weight", "transformer.head.bias"}
        allowed = set() if head <= state.keys() else head  # a dropped head stays freshly initialised
        if set(missing) - allowed or unexpected:
            raise CheckpointError(f"{path.name} does not fit POSTER++ (missing {sorted(missing)[:4]}, "
                                  f"unexpected {sorted(unexpected)[:4]})")
        say(f"initialised from {path} ({meta['name']}; {meta['dataset'] or 'dataset'} "
            f"{meta['dataset_reason'].replace('--dataset', '--init-dataset')}); {note}")
        return model
    load_pretrained_backbones(model, ir50=config.ir50, mobilefacenet=config.mobilefacenet)
    for label, source in (("IR-50", config.ir50), ("MobileFaceNet", config.mobilefacenet)):
        say(f"{label}: {'pretrained weights from ' + str(source) if source else 'RANDOM weights (no pretraining)'}")
    return model


def fit_head(state: dict[str, torch.Tensor], old_names: Sequence[str],
             new_names: Sequence[str]) -> tuple[dict[str, torch.Tensor], str]:
    """Make a checkpoint's classification head fit ``new_names``; returns the state and what was done.

    Same classes (by canonical name) in another order: rows reordered. Unnamed classes, same count:
    kept as they are. Otherwise the head is dropped, so the model's freshly initialised head stays.
    """
    old = [canonical_class(n) for n in old_names]
    new = [canonical_class(n) for n in new_names]
    weight, bias = state["transformer.head.weight"], state["transformer.head.bias"]
    if old == new:
        return state, "head kept"
    if not old and weight.shape[0] == len(new):
        return state, "head kept (the checkpoint names no classes; assumed to be in the same order)"
    if sorted(old) == sorted(new) and len(set(old)) == len(old):
        order = [old.index(name) for name in new]
        state = dict(state, **{"transformer.head.weight": weight[order], "transformer.head.bias": bias[order]})
        return state, "head rows reordered to the new class order"
    state = {k: v for k, v in state.items() if not k.startswith("transformer.head.")}
    return state, f"head replaced ({weight.shape[0]} -> {len(new)} classes, freshly initialised)"


def make_optimizer(model: nn.Module, config: TrainConfig) -> tuple[SAM, torch.optim.lr_scheduler.ExponentialLR]:
    """SAM around Adam over the trainable weights, and the per-epoch exponential decay."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = SAM(trainable, torch.optim.Adam, rho=config.rho, lr=config.lr, weight_decay=config.weight_decay)
    # The scheduler drives the base optimizer, whose step() is the one that runs (see poster.training.sharpness_aware).
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer.base_optimizer, gamma=config.gamma)
    return optimizer, scheduler


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for float32. ``auto``: bfloat16 on GPUs that have it."""
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else None
    if precision == "fp16" and device.type != "cuda":
        raise PosterError("fp16 mixed precision needs a GPU; use bf16 or fp32 on the CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


# --- One step -----------------------------------------------------------------------------

@dataclass
class StepOutput:
    """The first pass of a SAM step (at the weights before the update)."""

    loss: torch.Tensor    # scalar, detached
    logits: torch.Tensor  # (B, C) float32, detached
    applied: bool         # False when an fp16 overflow made the step skip


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over the kept items (unreadable images stay in the batch with keep 0,
    so that every process still runs the same forward and backward passes)."""
    losses = F.cross_entropy(logits.float(), labels, reduction="none")
    if keep is None:
        return losses.mean()
    keep = keep.to(losses.dtype)
    return (losses * keep).sum() / keep.sum().clamp_min(1)


def sam_step(model: nn.Module, optimizer: SAM, images: torch.Tensor, labels: torch.Tensor, *,
             keep: torch.Tensor | None = None, amp: torch.dtype | None = None,
             scaler: torch.amp.GradScaler | None = None) -> StepOutput:
    """One SAM update on one batch. With DDP both backward passes are all-reduced (no ``no_sync``).

    With an fp16 ``scaler`` the first gradient is unscaled before SAM reads its norm; an overflow
    there skips the whole step (the scaler lowers its scale), one in the second pass skips the
    base optimizer's step as GradScaler always does. bfloat16 and float32 need no scaler.
    """
    def forward_backward() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(images.device.type, dtype=amp, enabled=amp is not None):
            logits = model(images)
        loss = masked_cross_entropy(logits, labels, keep)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        return loss.detach(), logits.detach().float()

    optimizer.zero_grad(set_to_none=True)
    loss, logits = forward_backward()
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = optimizer.first_step(zero_grad=True)
    if scaler is not None and not torch.isfinite(norm):
        optimizer.restore()
        optimizer.zero_grad(set_to_none=True)
        scaler.update()
        return StepOutput(loss, logits, applied=False)
    forward_backward()
    if scaler is None:
        optimizer.second_step(zero_grad=True)
    else:
        optimizer.restore()
        scaler.step(optimizer.base_optimizer)  # a separate optimizer object: unscales the new grads
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    return StepOutput(loss, logits, applied=True)


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


# --- Run folder state ----------------------------------------------------------------------

def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def load_training_state(run_dir: str | Path) -> dict[str, Any]:
    """``last.pt`` of a run, read with ``weights_only=True`` (tensors and plain data only)."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise PosterError(f"nothing to resume in {run_dir}: no {STATE_FILE} (no epoch finished yet)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, or a pickle asking for more than tensors and data
        raise CheckpointError(f"cannot read {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a POSTER++ training state")
    return state


def _save_torch(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


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
        _restore(state, model, optimizer, scheduler, scaler, info, device, seed, log)
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
            record = _epoch_record(epoch + 1, lr, train_stats, predictions, len(class_names), eval_seconds)
            history.append(record)
            if record["test_accuracy"] > best["accuracy"]:
                best = {"epoch": epoch + 1, "accuracy": record["test_accuracy"]}
                _save_best(model, predictions, test_set, config, dataset_key, class_names, epoch + 1,
                           record["test_accuracy"], device, eval_seconds, source_sha256)
            write_json_atomic(run_dir / HISTORY_FILE, history)
            plot_curves(history, run_dir / CURVES_FILE)
            log(_describe_epoch(record, best, len(train_set.skipped), len(test_set.skipped)))
        rngs = distributed.all_gather_objects(rng_state(device), info)
        if info.is_main:
            _save_torch({
                "format": STATE_FORMAT, "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": rngs, "history": history, "best": best, "config": config.to_dict(),
                "source_sha256": source_sha256,
            }, run_dir / STATE_FILE)
        distributed.barrier(info)

    if info.is_main:
        result.history = history
        result.best_epoch, result.best_accuracy = best["epoch"], (best["accuracy"] if best["epoch"] else None)
        if best["epoch"] is not None:
            result.best_checkpoint, result.best_run = run_dir / BEST_FILE, run_dir / BEST_RUN
            log(f"best test accuracy {best['accuracy']:.2f} % at epoch {best['epoch']}: "
                f"{result.best_checkpoint}, evaluation run {result.best_run}")
    return result


def _restore(state: dict[str, Any], model: PosterV2, optimizer: SAM, scheduler: torch.optim.lr_scheduler.LRScheduler,
             scaler: torch.amp.GradScaler | None, info: DistInfo, device: torch.device, seed: int,
             log: Callable[[str], None]) -> None:
    """Put weights, optimizer, schedule, loss scale and this process's RNG back as last.pt has them."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rngs = state["rng"]
    if len(rngs) == info.world_size:
        set_rng_state(rngs[info.rank], device)
    else:
        torch.manual_seed(seed + 1 + info.rank + 1000 * int(state["epoch"]))
        log(f"note: resumed on {info.world_size} processes, saved on {len(rngs)}: augmentation reseeded")


def _train_epoch(net: nn.Module, optimizer: SAM, loader: DataLoader, dataset: ImageDataset, info: DistInfo,
                 device: torch.device, amp: torch.dtype | None, scaler: torch.amp.GradScaler | None, *,
                 desc: str, progress: bool) -> dict[str, float]:
    """One pass over this process's shard; returns totals over all processes."""
    net.train()  # PosterV2.train keeps the frozen landmark branch in eval mode
    dataset.skipped = list(dataset.listing.skipped)  # this epoch's load failures only
    loss_sum = correct = seen = 0.0
    skipped_steps = 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, unit="batch", disable=not (progress and info.is_main), file=sys.stderr,
               dynamic_ncols=True, leave=True)
    for images, indices, errors in bar:
        loaded = dataset.record_failures(indices.tolist(), errors)
        keep = torch.zeros(len(indices), dtype=torch.bool)
        keep[loaded] = True
        keep = keep.to(device)
        memory = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        images = images.to(device, non_blocking=True, memory_format=memory)
        labels = torch.tensor([dataset.listing.items[int(i)].label for i in indices], device=device)
        out = sam_step(net, optimizer, images, labels, keep=keep, amp=amp, scaler=scaler)
        skipped_steps += not out.applied
        n = float(len(loaded))
        loss_sum += float(out.loss) * n
        correct += float((out.logits.argmax(1) == labels)[keep].sum())
        seen += n
        elapsed = time.perf_counter() - start
        bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.4f}", acc=f"{100 * correct / max(seen, 1):.2f}%",
                        img_s=f"{seen * info.world_size / max(elapsed, 1e-9):.3g}")
    bar.close()
    elapsed = time.perf_counter() - start
    loss_sum, correct, seen, skipped_steps = distributed.all_reduce_sum(
        [loss_sum, correct, seen, skipped_steps], info, device)
    return {"loss": loss_sum / max(seen, 1), "accuracy": 100 * correct / max(seen, 1), "images": seen,
            "seconds": elapsed, "images_per_second": seen / max(elapsed, 1e-9), "skipped_steps": skipped_steps}


def _epoch_record(epoch: int, lr: float, train: dict[str, float], predictions: pd.DataFrame, num_classes: int,
                  eval_seconds: float) -> dict[str, Any]:
    labels, preds = predictions["label"].to_numpy(), predictions["pred"].to_numpy()
    return {
        "epoch": epoch, "lr": lr,
        # Training figures come from each step's first pass, at the weights before its update.
        "train_loss": train["loss"], "train_accuracy": train["accuracy"],
        "test_loss": float(predictions["loss"].mean()) if len(predictions) else math.nan,
        "test_accuracy": 100 * metrics.accuracy(labels, preds),
        "test_mean_class_accuracy": 100 * metrics.mean_class_accuracy(labels, preds, num_classes),
        "test_macro_f1": 100 * metrics.macro_f1(labels, preds, num_classes),
        "train_images": int(train["images"]), "test_images": len(predictions),
        "train_seconds": round(train["seconds"], 3), "test_seconds": round(eval_seconds, 3),
        "images_per_second": round(train["images_per_second"], 4),
        "skipped_steps": int(train["skipped_steps"]),
    }


def _describe_epoch(record: dict[str, Any], best: dict[str, Any], train_skipped: int, test_skipped: int) -> str:
    text = (f"epoch {record['epoch']}: lr {record['lr']:.3g} | train loss {record['train_loss']:.4f} "
            f"acc {record['train_accuracy']:.2f} % | test loss {record['test_loss']:.4f} "
            f"acc {record['test_accuracy']:.2f} % macro-F1 {record['test_macro_f1']:.2f} % | "
            f"{record['images_per_second']:.3g} img/s | best {best['accuracy']:.2f} % (epoch {best['epoch']})")
    if train_skipped or test_skipped:
        text += f" | unreadable or skipped: {train_skipped} train, {test_skipped} test"
    if record["skipped_steps"]:
        text += f" | {record['skipped_steps']} fp16 overflow steps skipped"
    return text


def _start_description(config: TrainConfig) -> dict[str, str | None]:
    if config.init:
        return {"init": config.init}
    return {"ir50": config.ir50, "mobilefacenet": config.mobilefacenet}


def _save_best(model: PosterV2, predictions: pd.DataFrame, test_set: ImageDataset, config: TrainConfig,
               dataset_key: str | None, class_names: Sequence[str], epoch: int, accuracy: float,
               device: torch.device, eval_seconds: float, source_sha256: str) -> None:
    """best.safetensors, then its evaluation run (so the run always describes the file beside it)."""
    run_dir = Path(config.out)
    path = run_dir / BEST_FILE
    # published_accuracy is the figure a checkpoint is reported with: here, the measured test accuracy.
    save_safetensors(model.state_dict(), path, dataset=dataset_key, class_names=class_names,
                     source_sha256=source_sha256, published_accuracy=round(accuracy, 4), name=run_dir.name,
                     extra={"epoch": epoch, "test_accuracy": accuracy, "training_run": str(run_dir),
                            "started_from": _start_description(config)})
    info = CheckpointInfo(name=run_dir.name, dataset=dataset_key, class_names=tuple(class_names),
                          sha256=sha256_file(path), published_accuracy=round(accuracy, 4), source=str(path))
    summary = run_summary(predictions, info, test_set, split="test", device=device, duration_s=eval_seconds)
    summary |= {"training_run": str(run_dir), "epoch": epoch}
    with staged_run_dir(run_dir / BEST_RUN) as stage:
        write_run(stage, predictions, summary)
