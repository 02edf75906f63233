"""One call, every map: Grad-CAM of both streams, cross-attention and rollout for a batch of faces.

``Explainer`` is built once around a model; ``explain`` runs one forward and one backward pass
for the whole batch and hands back plain numpy arrays per face, like a predictor would.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from poster.inference.faces import FaceCrop
from poster.models.poster_v2 import INPUT_SIZE, PosterV2
from poster.inference.transforms import denormalize, to_batch

from .attention import attention_rollout, query_index, received_attention
from .explained_face import ExplainedFace
from .gradcam import Target, gradcam_pass

MAP_KINDS = ("gradcam_image", "gradcam_landmark", "cross_attention", "rollout")
Faces = torch.Tensor | Sequence[np.ndarray | FaceCrop]


@dataclass(frozen=True, eq=False)
class FaceExplanation(ExplainedFace):
    """Everything explained about one face. Map lists hold one map per scale (28, 14, 7 px grids;
    the rollout's three are 7x7), at native resolution, as numpy arrays."""

    image: np.ndarray                        # (224, 224, 3) uint8: the crop the model saw
    class_names: tuple[str, ...]
    logits: np.ndarray                       # (K,)
    probabilities: np.ndarray                # (K,) softmax of the logits
    target: int                              # the class the Grad-CAM maps explain
    gradcam_image: list[np.ndarray]          # raw Grad-CAM (ReLU, not rescaled), image stream
    gradcam_landmark: list[np.ndarray]       # raw Grad-CAM, landmark stream
    cross_attention: list[np.ndarray]        # attention each image position receives (sums to 1)
    cross_attention_heads: list[np.ndarray]  # the same per head: (heads, h, w)
    cross_attention_matrices: list[np.ndarray]  # (N_query, N_key) head-averaged, for query maps
    rollout: list[np.ndarray]                # CLS rollout over each scale's 7x7 tokens
    crop: FaceCrop | None = None             # where the crop came from, if it was given

    def maps(self, kind: str) -> list[np.ndarray]:
        """The three maps of one of ``MAP_KINDS``."""
        if kind not in MAP_KINDS:
            raise ValueError(f"unknown map kind {kind!r}; choose from {MAP_KINDS}")
        return getattr(self, kind)

    def query_attention(self, point: tuple[float, float]) -> list[np.ndarray]:
        """Where the landmark query at ``point`` (x, y in crop pixels) looks, at each level (sums to 1)."""
        out = []
        for matrix in self.cross_attention_matrices:
            side = int(round(matrix.shape[-1] ** 0.5))
            out.append(matrix[query_index(point, side, self.image.shape[0])].reshape(side, side))
        return out


class Explainer:
    """Explanations for a POSTER++ model; build once, call ``explain`` per batch of faces.

    During a pass captum's hooks sit on six of the model's modules, and any other forward pass
    through the same model meanwhile would overwrite what they record: explanations are
    serialized here, and a predictor sharing the model from another thread needs the same lock
    (``Explainer.lock``).
    """

    def __init__(self, model: PosterV2, class_names: Sequence[str] | None = None) -> None:
        self.model = model
        info = getattr(model, "info", None)
        names = class_names or (info.class_names if info is not None else None)
        self.class_names = tuple(names or (f"class {i}" for i in range(model.num_classes)))
        if len(self.class_names) != model.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {model.num_classes} classes")
        self.lock = threading.Lock()

    def explain(self, faces: Faces, target: Target = None) -> list[FaceExplanation]:
        """Maps for every face, explaining ``target`` (None: each face's predicted class; an int:
        that class for all; a sequence: one class per face). One forward + one backward pass."""
        if self.model.training:
            # Batch norm in training mode mixes faces of a batch and moves running statistics.
            raise RuntimeError("call model.eval() before explaining")
        batch, images, crops = _prepare(faces)
        if batch.shape[0] == 0:
            return []
        batch = batch.to(self.model.transformer.head.weight.device)
        with self.lock:
            result = gradcam_pass(self.model, batch, target)
        out = result.output
        heads = [received_attention(a, per_head=True) for a in out.cross_attention]
        # One device-to-host copy per map kind, then per-face slices.
        arrays = {
            "logits": _np(out.logits),
            "probabilities": _np(torch.softmax(out.logits.double(), dim=1)),
            "gradcam_image": [_np(m) for m in result.image],
            "gradcam_landmark": [_np(m) for m in result.landmark],
            "cross_attention": [_np(m.mean(dim=1)) for m in heads],
            "cross_attention_heads": [_np(m) for m in heads],
            "cross_attention_matrices": [_np(a.mean(dim=1)) for a in out.cross_attention],
            "rollout": [_np(m) for m in attention_rollout(out.vit_attention)],
        }
        targets = result.target.tolist()
        return [
            FaceExplanation(
                image=images[i], class_names=self.class_names, target=targets[i], crop=crops[i],
                **{name: _face_slice(value, i) for name, value in arrays.items()},
            )
            for i in range(batch.shape[0])
        ]


def _prepare(faces: Faces) -> tuple[torch.Tensor, list[np.ndarray], list[FaceCrop | None]]:
    """Normalized batch, the uint8 crops for display, and the FaceCrops where given."""
    if isinstance(faces, torch.Tensor):
        if faces.ndim != 4 or tuple(faces.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected a (B, 3, {INPUT_SIZE}, {INPUT_SIZE}) batch, got {tuple(faces.shape)}")
        batch = faces.detach()
        return batch, list(denormalize(batch)), [None] * batch.shape[0]
    if isinstance(faces, FaceCrop) or (isinstance(faces, np.ndarray) and faces.ndim == 3):
        faces = [faces]  # one face given on its own
    crops = [face if isinstance(face, FaceCrop) else None for face in faces]
    images = [face.image if isinstance(face, FaceCrop) else np.asarray(face) for face in faces]
    batch = to_batch(images)
    if any(im.shape[:2] != (INPUT_SIZE, INPUT_SIZE) for im in images):
        # to_batch resized these: show what the model saw.
        images = [im if im.shape[:2] == (INPUT_SIZE, INPUT_SIZE) else shown
                  for im, shown in zip(images, denormalize(batch))]
    return batch, images, crops


def _face_slice(value: np.ndarray | list[np.ndarray], i: int) -> np.ndarray | list[np.ndarray]:
    """Face i's own copy: a view would keep the whole batch's arrays alive."""
    return [m[i].copy() for m in value] if isinstance(value, list) else value[i].copy()


def _np(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()  # numpy has no bfloat16
    return tensor.numpy()
