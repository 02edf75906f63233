"""Grad-CAM on every layer a model declares (``model.gradcam_layers()``), from one forward and one
backward pass.

Captum's ``compute_layer_gradients_and_eval`` (the routine ``LayerGradCam`` runs on) takes a list
of layers: it hooks all of them, runs the forward function once and calls ``torch.autograd.grad``
once for all. Its hooks also make a frozen backbone's outputs part of the graph, which is why
POSTER++'s landmark stream gets gradients although its weights have none. The forward function we
hand it runs ``forward_intermediates`` (so the same pass records the attention maps) and returns
each face's target logit, so no second pass is needed to learn the predicted class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from captum._utils.gradient import compute_layer_gradients_and_eval
from torch import nn

from poster.models.outputs import GradCamLayer, ModelOutput

Target = int | Sequence[int] | torch.Tensor | None


def gradcam_map(activation: torch.Tensor, gradient: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """(B, C, H, W) activation and gradient -> (B, H, W) Grad-CAM: sum_c mean_hw(dY/dA_c) * A_c."""
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = (weights * activation).sum(dim=1)
    return F.relu(cam) if relu else cam


@dataclass
class GradCamPass:
    """What one forward + backward pass yields. Tensors are detached; maps are raw (not rescaled)."""

    output: ModelOutput                # logits and labelled maps of the same forward pass
    target: torch.Tensor               # (B,) class each face's maps explain
    layers: list[GradCamLayer]         # the model's declared layers, in its order
    maps: list[torch.Tensor]           # one (B, rows, cols) Grad-CAM per layer


def resolve_target(target: Target, batch: int, num_classes: int) -> torch.Tensor | None:
    """(B,) class indices from one class for all faces or one per face; None stays None
    (the predicted class, known only after the forward pass)."""
    if target is None:
        return None
    chosen = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if chosen.numel() == 1:
        chosen = chosen.expand(batch)
    if chosen.numel() != batch:
        raise ValueError(f"got {chosen.numel()} targets for {batch} faces")
    if ((chosen < 0) | (chosen >= num_classes)).any():
        raise ValueError(f"target classes must lie in [0, {num_classes}), got {chosen.tolist()}")
    return chosen


def gradcam_pass(model: nn.Module, batch: torch.Tensor, target: Target = None, relu: bool = True) -> GradCamPass:
    """Grad-CAM on each of the model's declared layers, plus the pass's recorded maps.

    ``forward_intermediates`` classifies every face alone (eval mode; ARM's too), so the gradient
    of the sum of each face's target logit gives every face its own maps.
    """
    layers = model.gradcam_layers()
    fixed = resolve_target(target, batch.shape[0], model.num_classes)  # fail before the pass
    recorded: dict[str, object] = {}

    def target_logits(x: torch.Tensor) -> torch.Tensor:
        output = model.forward_intermediates(x)
        chosen = output.logits.detach().argmax(dim=1) if fixed is None else fixed.to(output.logits.device)
        recorded["output"], recorded["target"] = output, chosen
        return output.logits.gather(1, chosen[:, None]).squeeze(1)

    gradients, activations = compute_layer_gradients_and_eval(target_logits, [l.module for l in layers], batch)
    maps = [gradcam_map(a[0].detach(), g[0], relu) for a, g in zip(activations, gradients)]
    return GradCamPass(output=recorded["output"].detach(), target=recorded["target"], layers=layers, maps=maps)
