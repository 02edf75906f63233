"""One optimisation step of the published recipe: SAM around Adam, its learning-rate decay, mixed
precision, and the loss over the images of a batch that loaded."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PosterError
from .recipe import TrainConfig
from .sharpness_aware import SAM


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
