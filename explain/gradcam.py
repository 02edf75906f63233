"""Grad-CAM for both POSTER++ streams at all three scales from one forward and one backward pass.

Captum's ``compute_layer_gradients_and_eval`` (the routine ``LayerGradCam`` runs on) takes a list
of layers: it hooks all six, runs the forward function once and calls ``torch.autograd.grad``
once for all of them. Its hooks also make the frozen landmark backbone's outputs part of the
graph, which is why the landmark stream gets gradients although its weights have none. The
forward function we hand it runs ``forward_intermediates`` (so the same pass records the
attention maps) and returns each face's target logit, so no second pass is needed to learn the
predicted class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from captum._utils.gradient import compute_layer_gradients_and_eval
from torch import nn

from poster.models.poster_v2 import PosterOutput, PosterV2

STREAMS = ("image", "landmark")
Target = int | Sequence[int] | torch.Tensor | None


def gradcam_layers(model: PosterV2) -> dict[str, list[nn.Module]]:
    """The modules whose outputs meet in the cross-attention, per stream, at 28, 14 and 7 px.

    Image stream: the projections whose outputs are the keys/values. Landmark stream: the
    MobileFaceNet stages used as queries, and the projection of the last (512 -> 256 channels).
    """
    backbone = model.landmark_backbone
    return {
        "image": list(model.image_proj),
        "landmark": [backbone.stage1, backbone.stage2, model.landmark_proj],
    }


def gradcam_map(activation: torch.Tensor, gradient: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """(B, C, H, W) activation and gradient -> (B, H, W) Grad-CAM: sum_c mean_hw(dY/dA_c) * A_c."""
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = (weights * activation).sum(dim=1)
    return F.relu(cam) if relu else cam


@dataclass
class GradCamPass:
    """What one forward + backward pass yields. Tensors are detached; maps are raw (not rescaled)."""

    output: PosterOutput               # logits, features and attention of the same forward pass
    target: torch.Tensor               # (B,) class each face's maps explain
    image: list[torch.Tensor]          # (B, 28, 28), (B, 14, 14), (B, 7, 7)
    landmark: list[torch.Tensor]       # same shapes, landmark stream


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


def gradcam_pass(model: PosterV2, batch: torch.Tensor, target: Target = None,
                 relu: bool = True) -> GradCamPass:
    """Grad-CAM of both streams at three scales, plus the pass's recorded attention.

    Faces in a batch do not interact (eval mode), so the gradient of the sum of each face's
    target logit gives every face its own maps.
    """
    layers = gradcam_layers(model)
    fixed = resolve_target(target, batch.shape[0], model.num_classes)  # fail before the pass
    recorded: dict[str, object] = {}

    def target_logits(x: torch.Tensor) -> torch.Tensor:
        output = model.forward_intermediates(x)
        chosen = output.logits.detach().argmax(dim=1) if fixed is None else fixed.to(output.logits.device)
        recorded["output"], recorded["target"] = output, chosen
        return output.logits.gather(1, chosen[:, None]).squeeze(1)

    all_layers = layers["image"] + layers["landmark"]
    gradients, activations = compute_layer_gradients_and_eval(target_logits, all_layers, batch)
    cams = [gradcam_map(a[0].detach(), g[0], relu) for a, g in zip(activations, gradients)]
    n_image = len(layers["image"])
    return GradCamPass(output=_detached(recorded["output"]), target=recorded["target"],
                       image=cams[:n_image], landmark=cams[n_image:])


def _detached(output: PosterOutput) -> PosterOutput:
    """Drop the autograd graph so the pass's memory is freed as soon as the maps are made."""
    return PosterOutput(
        logits=output.logits.detach(),
        image_features=[t.detach() for t in output.image_features],
        landmark_features=[t.detach() for t in output.landmark_features],
        cross_attention=[t.detach() for t in output.cross_attention],
        vit_attention=[t.detach() for t in output.vit_attention],
        landmarks=None if output.landmarks is None else output.landmarks.detach(),
    )
