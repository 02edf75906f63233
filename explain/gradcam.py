"""Grad-CAM on every layer a model declares (``model.gradcam_layers()``), from one forward and one
backward pass.

``layer_gradients`` hooks all the layers, runs the forward function once and calls
``torch.autograd.grad`` once for all (as captum's ``compute_layer_gradients_and_eval``, which the
tests compare with, does). Its hooks also make a frozen backbone's outputs part of the graph, which
is why POSTER++'s landmark stream gets gradients although its weights have none. They record only
the pass of the thread that placed them: a server predicts with the same model from other threads
meanwhile, and a hook that recorded those passes too would hand the backward pass activations from
another graph. The forward function runs ``forward_intermediates`` (so the same pass records the
attention maps) and returns each face's target logit, so no second pass is needed to learn the
predicted class.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
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


def layer_gradients(forward: Callable[[torch.Tensor], torch.Tensor], modules: Sequence[nn.Module],
                    batch: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(gradients, activations) of each module's output in one pass: ``forward(batch)``'s values
    summed, differentiated once with respect to every module's output (each a tensor)."""
    owner, saved = threading.get_ident(), {}

    def record(index: int):
        def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor | None:
            if threading.get_ident() != owner:
                return None  # another thread's pass through the shared model: not ours to record
            if not output.requires_grad:  # a frozen stream: its output becomes a leaf of this graph
                output = output.detach().requires_grad_()
            saved[index] = output
            return output.clone()  # the graph runs on through the clone, from the recorded tensor
        return hook

    handles = [module.register_forward_hook(record(i)) for i, module in enumerate(modules)]
    try:
        with torch.enable_grad():
            values = forward(batch)
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i in range(len(modules)) if i not in saved]
    if missing:
        raise RuntimeError(f"layers {missing} did not run in the forward pass")
    activations = [saved[i] for i in range(len(modules))]
    gradients = torch.autograd.grad(values.sum(), activations)
    return list(gradients), activations


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

    gradients, activations = layer_gradients(target_logits, [l.module for l in layers], batch)
    maps = [gradcam_map(a.detach(), g, relu) for a, g in zip(activations, gradients)]
    return GradCamPass(output=recorded["output"].detach(), target=recorded["target"], layers=layers, maps=maps)
