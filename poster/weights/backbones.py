"""The pretrained backbones POSTER++ training starts from: IR-50 (face recognition) and
MobileFaceNet (68 landmarks), read from their published files into the model's streams."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..models import PosterV2, ir50, mobilefacenet
from . import locate
from .files import fit_problems, few
from .registry import create_model, get_weights
from .safe_pickle import safe_torch_load


def load_pretrained_backbones(model: PosterV2, ir50: str | Path | None = None,
                              mobilefacenet: str | Path | None = None) -> None:
    """Copy the published pretraining weights (IR-50 face recognition, MobileFaceNet landmarks) in."""
    if ir50 is not None:
        _load_part(model.image_backbone, _ir50_state(ir50), "ir50")
    if mobilefacenet is not None:
        _load_part(model.landmark_backbone, _mobilefacenet_state(mobilefacenet), "mobilefacenet")


def verify_backbone(path: str | Path, key: str) -> None:
    """Check a pretrained backbone file ("ir50" or "mobilefacenet") the way
    ``load_pretrained_backbones`` will read it: safe load, and keys and shapes that fit exactly."""
    parts = {"ir50": (_ir50_state, "image_backbone."), "mobilefacenet": (_mobilefacenet_state, "landmark_backbone.")}
    if key not in parts:
        raise CheckpointError(f"unknown backbone {key!r}; known: {', '.join(parts)}")
    to_state, prefix = parts[key]
    state = to_state(path)
    expected = {k.removeprefix(prefix): v for k, v in _expected_state(get_weights(key).arch).items()
                if k.startswith(prefix)}
    problems = fit_problems(expected, state)
    if problems:
        raise CheckpointError(f"{Path(path).name}: {key} weights do not fit: " + "; ".join(problems))


def _expected_state(arch: str) -> dict[str, torch.Tensor]:
    """The state dict of ``arch`` (the network whose training starts from the backbone), shapes only."""
    with torch.device("meta"):
        return create_model(arch).state_dict()


def _ir50_state(source: str | Path) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in _tensor_dict(source).items():
        # face.evoLVe numbering (body.0..23) or the POSTER++ split (body1/body2/body3).
        key = ir50.split_flat_key(key.removeprefix("module."))
        if key.startswith(("body4.", "output_layer.")):  # face recognition's last stage and embedding
            continue
        new = ir50.original_key(key)
        if new is None:
            raise CheckpointError(f"ir50 weights: unexpected key {key}")
        out[new] = value
    return out


def _mobilefacenet_state(source: str | Path) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in _tensor_dict(source).items():
        new = mobilefacenet.original_key(key.removeprefix("module."))
        if new is None:
            raise CheckpointError(f"mobilefacenet weights: unexpected key {key}")
        out[new] = value
    return out


def _tensor_dict(source: str | Path) -> dict[str, torch.Tensor]:
    path = locate.resolve(source)
    data = safe_torch_load(str(path), path.name)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path.name} holds no state dict of tensors")
    return data


def _load_part(module: nn.Module, state: dict[str, torch.Tensor], label: str) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{label} weights do not fit: missing {few(missing)}; unexpected {few(unexpected)}")
