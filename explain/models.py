"""Explanations of any model that describes itself: POSTER (v1), ARM, and whatever follows.

Such a model names the layers Grad-CAM uses (``gradcam_layers()``) and returns labelled maps from
``forward_intermediates`` (``poster.models.outputs.ModelOutput``), each with its spatial grid or
``None``. Nothing here knows an architecture: every map carries the model's own label and meaning,
and a map without a spatial grid is reported as such instead of being drawn.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from captum._utils.gradient import compute_layer_gradients_and_eval
from torch import nn

from poster.inference.faces import FaceCrop
from poster.inference.transforms import denormalize, model_batch, preprocessing_of

from .explained_face import ExplainedFace
from .gradcam import Target, gradcam_map, resolve_target


@dataclass(frozen=True)
class LabelledMap:
    """One map over the face crop (``values`` None where it has no spatial picture)."""

    name: str
    values: np.ndarray | None   # (rows, cols) at native resolution
    meaning: str

    @property
    def spatial(self) -> bool:
        return self.values is not None


@dataclass(frozen=True, eq=False)
class ModelExplanation(ExplainedFace):
    """One face explained by a self-describing model."""

    image: np.ndarray                     # (224, 224, 3) uint8 RGB: the crop the model saw
    class_names: tuple[str, ...]
    logits: np.ndarray
    probabilities: np.ndarray
    target: int
    gradcam: list[LabelledMap]            # one per layer the model names, raw (ReLU, not rescaled)
    attention: list[LabelledMap]          # the model's attention where it has a spatial meaning, else a note
    native: list[LabelledMap] = field(default_factory=list)  # the model's own maps (ARM's 11x11 map)
    crop: FaceCrop | None = None


class ModelExplainer:
    """Grad-CAM on the model's own spatial layers plus its labelled maps, one forward + backward pass."""

    def __init__(self, model: nn.Module, class_names: Sequence[str] | None = None) -> None:
        if not hasattr(model, "gradcam_layers"):
            raise TypeError(f"{type(model).__name__} does not name its Grad-CAM layers")
        self.model = model
        info = getattr(model, "info", None)
        names = class_names or (info.class_names if info is not None else None)
        self.class_names = tuple(names or (f"class {i}" for i in range(model.num_classes)))
        self.lock = threading.Lock()

    def explain(self, faces: torch.Tensor | Sequence[np.ndarray | FaceCrop],
                target: Target = None) -> list[ModelExplanation]:
        if self.model.training:
            raise RuntimeError("call model.eval() before explaining")
        batch, images, crops = self._prepare(faces)
        if batch.shape[0] == 0:
            return []
        layers = self.model.gradcam_layers()
        fixed = resolve_target(target, batch.shape[0], self.model.num_classes)
        recorded: dict[str, object] = {}

        def target_logits(x: torch.Tensor) -> torch.Tensor:
            output = self.model.forward_intermediates(x)
            chosen = output.logits.detach().argmax(dim=1) if fixed is None else fixed.to(output.logits.device)
            recorded["output"], recorded["target"] = output, chosen
            return output.logits.gather(1, chosen[:, None]).squeeze(1)

        with self.lock:
            gradients, activations = compute_layer_gradients_and_eval(target_logits, list(layers.values()), batch)
        cams = [_np(gradcam_map(a[0].detach(), g[0])) for a, g in zip(activations, gradients)]
        output, targets = recorded["output"], recorded["target"].tolist()
        logits = _np(output.logits)
        probabilities = _np(torch.softmax(output.logits.detach().double(), dim=1))
        results = []
        for i in range(batch.shape[0]):
            gradcam = [LabelledMap(name, cam[i].copy(), f"Grad-CAM of {name} for the explained class")
                       for name, cam in zip(layers, cams)]
            results.append(ModelExplanation(
                image=images[i], class_names=self.class_names, logits=logits[i].copy(),
                probabilities=probabilities[i].copy(), target=targets[i], gradcam=gradcam,
                attention=[_attention_map(a, i) for a in output.attention],
                native=[_feature_map(m, i) for m in output.features if m.grid is not None and m.value.shape[1] == 1]
                + [LabelledMap(m.name, None, m.meaning) for m in output.features if m.grid is None],
                crop=crops[i]))
        return results

    def _prepare(self, faces) -> tuple[torch.Tensor, list[np.ndarray], list[FaceCrop | None]]:
        pre = preprocessing_of(self.model)
        device = next(self.model.parameters()).device
        if isinstance(faces, torch.Tensor):
            batch = faces.detach().to(device)
            return batch, list(denormalize(batch, pre)), [None] * batch.shape[0]
        if isinstance(faces, FaceCrop) or (isinstance(faces, np.ndarray) and faces.ndim == 3):
            faces = [faces]
        crops = [f if isinstance(f, FaceCrop) else None for f in faces]
        images = [f.image if isinstance(f, FaceCrop) else np.asarray(f) for f in faces]
        batch = model_batch(images, self.model)
        return batch, list(denormalize(batch, pre)), crops


def _attention_map(named, i: int) -> LabelledMap:
    """Attention each key receives (mean over heads and queries) on the key grid, if it has one."""
    if named.grid is None:
        return LabelledMap(named.name, None, named.meaning)
    received = named.value[i].detach().mean(dim=(0, 1))  # (N_key,)
    rows, cols = named.grid
    spatial = received[-rows * cols:]  # a leading summary token (POSTER's mean token) has no position
    share = 1.0 - float(spatial.sum())
    meaning = named.meaning + (f"; {share:.1%} goes to the stream's mean token, not drawn" if share > 1e-6 else "")
    return LabelledMap(named.name, _np(spatial.reshape(rows, cols)), meaning)


def _feature_map(named, i: int) -> LabelledMap:
    return LabelledMap(named.name, _np(named.value[i, 0].detach()), named.meaning)


def _np(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()
    return tensor.numpy()
