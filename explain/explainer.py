"""One explainer for every architecture, through the model contract (``poster.models.outputs``).

The model names the layers Grad-CAM uses (``gradcam_layers()``) and returns labelled maps from
``forward_intermediates``, each with its spatial grid or ``None``. Nothing here knows an
architecture: every map carries the model's own label and meaning, and a map without a spatial
grid is reported as such instead of being drawn. ``Explainer.explain`` runs one forward and one
backward pass for the whole batch and hands back plain numpy arrays per face, like a predictor.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from poster.inference.faces import FaceCrop
from poster.inference.transforms import denormalize, model_batch, preprocessing_of
from poster.models.outputs import NamedMap

from .attention import attention_rollout, query_index
from .explained_face import ExplainedFace
from .gradcam import Target, gradcam_pass

Faces = torch.Tensor | Sequence[np.ndarray | FaceCrop]


@dataclass(frozen=True)
class LabelledMap:
    """One map over the face crop (``values`` None where it has no spatial picture).

    ``group`` gathers maps of one family at several scales (a Grad-CAM layer's label); ``block``
    is the transformer block an attention map comes from, where the model has several.
    """

    name: str
    values: np.ndarray | None   # (rows, cols) at native resolution
    meaning: str
    group: str = ""
    block: int | None = None

    @property
    def spatial(self) -> bool:
        return self.values is not None


@dataclass(frozen=True)
class QueryAttention:
    """An attention whose queries are positions too: (N_query, N_key) head-averaged, both on ``grid``."""

    name: str
    matrix: np.ndarray
    grid: tuple[int, int]


@dataclass(frozen=True, eq=False)
class FaceExplanation(ExplainedFace):
    """Everything explained about one face, at native resolution, as numpy arrays."""

    image: np.ndarray                     # (224, 224, 3) uint8 RGB: the crop the model saw
    class_names: tuple[str, ...]
    logits: np.ndarray                    # (K,)
    probabilities: np.ndarray             # (K,) softmax of the logits
    target: int                           # the class the Grad-CAM maps explain
    gradcam: list[LabelledMap]            # one per declared layer, raw (ReLU, not rescaled)
    attention: list[LabelledMap]          # attention each key position receives (sums to <= 1), else a note
    native: list[LabelledMap] = field(default_factory=list)   # the model's own one-channel maps (ARM's 11x11)
    rollout: list[LabelledMap] = field(default_factory=list)  # class-token rollout over each token grid
    queries: list[QueryAttention] = field(default_factory=list)  # for ``query_attention``
    crop: FaceCrop | None = None          # where the crop came from, if it was given

    @property
    def clickable(self) -> bool:
        """Whether a clicked point has attention of its own to show (``query_attention``)."""
        return bool(self.queries)

    def query_attention(self, point: tuple[float, float]) -> list[LabelledMap]:
        """Where the query at ``point`` (x, y in crop pixels) looks, in each attention whose queries
        are positions (each map sums to 1)."""
        out = []
        for query in self.queries:
            rows, cols = query.grid
            row = query.matrix[query_index(point, rows, self.image.shape[0])]
            out.append(LabelledMap(query.name, row.reshape(rows, cols), "attention of the clicked position"))
        return out


class Explainer:
    """Explanations for any model that keeps the contract; build once, call ``explain`` per batch.

    During a pass hooks sit on the model's Grad-CAM layers; they record only this thread's pass,
    so predictors may share the model from other threads meanwhile. Explanations through one
    explainer still take turns (``Explainer.lock``): on a CPU two backward passes at once only
    share the same cores, and each would hold its graph's memory the longer.
    """

    def __init__(self, model: nn.Module, class_names: Sequence[str] | None = None) -> None:
        self.model = model
        info = getattr(model, "info", None)  # a loaded checkpoint's record; a bare model has none
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
        batch, images, crops = self._prepare(faces)
        if batch.shape[0] == 0:
            return []
        with self.lock:
            result = gradcam_pass(self.model, batch, target)
        out = result.output
        # One device-to-host copy per map, then per-face slices.
        logits = _np(out.logits)
        probabilities = _np(torch.softmax(out.logits.double(), dim=1))
        cams = [(layer, _np(m)) for layer, m in zip(result.layers, result.maps)]
        received = [(m, _np(_received(m))) for m in out.attention]
        native = [(m, _np(m.value[:, 0])) for m in out.features if m.grid is not None and m.value.shape[1] == 1]
        notes = [LabelledMap(m.name, None, m.meaning) for m in out.features if m.grid is None]
        rollout = []
        if out.self_attention:
            grid = out.self_attention[0].grid
            rollout = [_np(m) for m in attention_rollout([a.value for a in out.self_attention], grid)]
        queries = [(m, _np(m.value.mean(dim=1))) for m in out.attention if m.query_grid is not None]
        targets = result.target.tolist()
        return [
            FaceExplanation(
                image=images[i], class_names=self.class_names, logits=logits[i].copy(),
                probabilities=probabilities[i].copy(), target=targets[i], crop=crops[i],
                gradcam=[LabelledMap(layer.name, cam[i].copy(), f"Grad-CAM of {layer.name} for the explained class",
                                     group=layer.label) for layer, cam in cams],
                attention=[_attention_map(m, values, i) for m, values in received],
                native=[LabelledMap(m.name, values[i].copy(), m.meaning) for m, values in native] + notes,
                rollout=[LabelledMap(f"rollout, token grid {k + 1}", values[i].copy(),
                                     "attention rollout from the class token to these tokens")
                         for k, values in enumerate(rollout)],
                queries=[QueryAttention(m.name, values[i].copy(), m.query_grid) for m, values in queries],
            )
            for i in range(batch.shape[0])
        ]

    def _prepare(self, faces: Faces) -> tuple[torch.Tensor, list[np.ndarray], list[FaceCrop | None]]:
        """The batch the model expects, the uint8 RGB crops it saw (for display), the FaceCrops where given."""
        pre = preprocessing_of(self.model)
        device = next(self.model.parameters()).device
        if isinstance(faces, torch.Tensor):
            size = pre.input_size
            if faces.ndim != 4 or tuple(faces.shape[1:]) != (3, size, size):
                raise ValueError(f"expected a (B, 3, {size}, {size}) batch, got {tuple(faces.shape)}")
            batch = faces.detach().to(device)
            return batch, list(denormalize(batch, pre)), [None] * batch.shape[0]
        if isinstance(faces, FaceCrop) or (isinstance(faces, np.ndarray) and faces.ndim == 3):
            faces = [faces]  # one face given on its own
        crops = [face if isinstance(face, FaceCrop) else None for face in faces]
        images = [face.image if isinstance(face, FaceCrop) else np.asarray(face) for face in faces]
        if not images:
            return torch.empty(0, 3, pre.input_size, pre.input_size), [], []
        batch = model_batch(images, self.model)
        size = (pre.input_size, pre.input_size)
        # Crops of the input size are shown as given; others as the model saw them (resized, and
        # back in RGB where the checkpoint reads BGR).
        shown = [im if im.shape[:2] == size and pre.colour_order == "RGB" else seen
                 for im, seen in zip(images, denormalize(batch, pre))]
        return batch, shown, crops


def _received(named: NamedMap) -> torch.Tensor:
    """(B, N_key): the attention each key receives, averaged over heads and queries."""
    return named.value.mean(dim=(1, 2))


def _attention_map(named: NamedMap, received: np.ndarray, i: int) -> LabelledMap:
    """Attention each key receives on the key grid, if it has one; else a note."""
    if named.grid is None:
        return LabelledMap(named.name, None, named.meaning, block=named.block)
    rows, cols = named.grid
    spatial = received[i, -rows * cols:]  # a leading summary token (POSTER's mean token) has no position
    meaning = named.meaning
    if received.shape[-1] > rows * cols:
        meaning += f"; {1.0 - float(spatial.sum()):.1%} goes to the stream's mean token, not drawn"
    return LabelledMap(named.name, spatial.reshape(rows, cols).copy(), meaning, block=named.block)


def _np(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()  # numpy has no bfloat16
    return tensor.numpy()
