"""What a training run keeps in its folder: the training state after each epoch (what ``--resume``
reads), the per-epoch records, and the best weights with their evaluation run."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from torch import nn

from ..atomic import atomic_path
from ..data import metrics
from ..data.datasets import ImageDataset
from ..errors import CheckpointError, PosterError
from ..evaluation.run import run_summary, staged_run_dir, write_run
from ..weights.checkpoints import CheckpointInfo, save_safetensors, sha256_file
from ..weights.registry import get_weights
from ..distributed import DistInfo
from .recipe import TrainConfig
from .sharpness_aware import SAM

LOG_FILE = "train.log"
HISTORY_FILE = "history.json"
CURVES_FILE = "curves.png"
STATE_FILE = "last.pt"
BEST_FILE = "best.safetensors"
BEST_RUN = "best-test"
STATE_FORMAT = "poster-v2-training-state"


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


def save_training_state(run_dir: Path, *, epoch: int, model: nn.Module, optimizer: SAM,
                        scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler | None,
                        rngs: list[dict[str, torch.Tensor]], history: list[dict[str, Any]], best: dict[str, Any],
                        config: TrainConfig, source_sha256: str) -> None:
    """``last.pt``: everything a resumed run needs to go on as if it had never stopped (written atomically)."""
    state = {
        "format": STATE_FORMAT, "epoch": epoch, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rngs, "history": history, "best": best, "config": config.to_dict(),
        "source_sha256": source_sha256,
    }
    with atomic_path(run_dir / STATE_FILE) as tmp:
        torch.save(state, tmp)


def restore_training_state(state: dict[str, Any], model: nn.Module, optimizer: SAM, scheduler: torch.optim.lr_scheduler.LRScheduler,
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


def epoch_record(epoch: int, lr: float, train: dict[str, float], predictions: pd.DataFrame, num_classes: int,
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


def describe_epoch(record: dict[str, Any], best: dict[str, Any], train_skipped: int, test_skipped: int) -> str:
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


def save_best(model: nn.Module, predictions: pd.DataFrame, test_set: ImageDataset, config: TrainConfig,
               dataset_key: str | None, class_names: Sequence[str], epoch: int, accuracy: float,
               device: torch.device, eval_seconds: float, source_sha256: str) -> None:
    """best.safetensors, then its evaluation run (so the run always describes the file beside it)."""
    run_dir = Path(config.out)
    path = run_dir / BEST_FILE
    # published_accuracy is the figure a checkpoint is reported with: here, the measured test accuracy.
    save_safetensors(model.state_dict(), path, dataset=dataset_key, class_names=class_names, arch=model.arch,
                     source_sha256=source_sha256, published_accuracy=round(accuracy, 4), name=run_dir.name,
                     extra={"epoch": epoch, "test_accuracy": accuracy, "training_run": str(run_dir),
                            "started_from": _start_description(config)})
    info = CheckpointInfo(name=run_dir.name, dataset=dataset_key, class_names=tuple(class_names),
                          sha256=sha256_file(path), published_accuracy=round(accuracy, 4), source=str(path),
                          arch=model.arch, preprocessing=get_weights(arch=model.arch).preprocessing)
    summary = run_summary(predictions, info, test_set, split="test", device=device, duration_s=eval_seconds)
    summary |= {"training_run": str(run_dir), "epoch": epoch}
    with staged_run_dir(run_dir / BEST_RUN) as stage:
        write_run(stage, predictions, summary)
