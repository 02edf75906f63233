"""Preprocessing as each checkpoint was trained and tested: resize to the model's input size, ImageNet
statistics, and the channel order of its weights record (POSTER's released file saw BGR images).

Every path that feeds a network (predictor, evaluation, explanations, the app) goes through
``model_batch`` or ``eval_transform(preprocessing)``, so the colour order is applied everywhere.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from ..models.poster_v2 import POSTER_V2_PREPROCESSING
from ..models.weights_api import Preprocessing

# A bare model (no checkpoint record) is fed as POSTER++ is: RGB, ImageNet statistics.
BARE_MODEL = POSTER_V2_PREPROCESSING


def eval_transform(preprocessing: Preprocessing | None = None) -> T.Compose:
    """PIL RGB image -> normalized (3, size, size) float tensor, as the original test loader."""
    pre = preprocessing or BARE_MODEL
    steps = [T.Resize((pre.input_size, pre.input_size)), T.ToTensor()]
    if pre.colour_order == "BGR":
        steps.append(T.Lambda(_flip_channels))
    steps.append(T.Normalize(mean=pre.mean, std=pre.std))
    return T.Compose(steps)


def preprocessing_of(model: nn.Module) -> Preprocessing:
    """The preprocessing a loaded model's checkpoint expects (RGB ImageNet for a bare model)."""
    info = getattr(model, "info", None)
    return getattr(info, "preprocessing", None) or BARE_MODEL


def model_batch(images: list[np.ndarray], model: nn.Module) -> torch.Tensor:
    """HxWx3 uint8 RGB face crops -> the batch ``model`` expects, on the model's device."""
    device = next(model.parameters()).device
    return to_batch(images, preprocessing=preprocessing_of(model)).to(device)


def to_batch(images: list[np.ndarray], preprocessing: Preprocessing | None = None) -> torch.Tensor:
    """HxWx3 uint8 RGB arrays -> normalized (N, 3, size, size) float32 batch (``size``: the input size).

    Crops that are already of the input size skip the resize, so this is exact for aligned crops.
    With a BGR ``preprocessing`` the channels are swapped before normalizing, as OpenCV-read
    images were; the normalization constants stay in their (RGB) order, as in the original code.
    """
    pre = preprocessing or BARE_MODEL
    size = pre.input_size
    if not images:
        return torch.empty(0, 3, size, size)
    arrays = []
    for image in images:
        if image.shape[:2] != (size, size):
            image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
        arrays.append(image)
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
    if pre.colour_order == "BGR":
        batch = _flip_channels(batch)
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    return (batch - mean) / std


def denormalize(batch: torch.Tensor, preprocessing: Preprocessing | None = None) -> np.ndarray:
    """Normalized (N, 3, H, W) tensor -> (N, H, W, 3) uint8 RGB images, for display."""
    pre = preprocessing or BARE_MODEL
    mean = torch.tensor(pre.mean, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=batch.device).view(1, 3, 1, 1)
    images = (batch.float() * std + mean).clamp(0, 1)
    if pre.colour_order == "BGR":
        images = _flip_channels(images)
    images = images.mul(255).round().byte()
    return images.permute(0, 2, 3, 1).cpu().numpy()


def _flip_channels(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-3)
