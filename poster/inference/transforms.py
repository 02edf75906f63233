"""Preprocessing as each checkpoint was trained and tested: resize to the model's input size, ImageNet
statistics, and the channel order of its weights record (POSTER's released file saw BGR images).

Every path that feeds a network (predictor, evaluation, explanations, the app) goes through
``model_batch`` or ``eval_transform(preprocessing)``, so the colour order is applied everywhere.
"""
from __future__ import annotations

import functools

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


def resized_pixels(image: Image.Image, preprocessing: Preprocessing | None = None) -> torch.Tensor:
    """PIL RGB image -> (size, size, 3) uint8 tensor: the CPU part of ``eval_transform``.

    ``normalize_pixels`` does the rest where the batch is computed: a loader then moves a quarter
    of the bytes, and the float arithmetic runs on the GPU instead of the loader's cores.
    """
    size = (preprocessing or BARE_MODEL).input_size
    return torch.from_numpy(np.array(T.Resize((size, size))(image), dtype=np.uint8, copy=True))


def normalize_pixels(pixels: torch.Tensor, preprocessing: Preprocessing | None = None,
                     dtype: torch.dtype = torch.float32,
                     memory_format: torch.memory_format = torch.channels_last) -> torch.Tensor:
    """(N, size, size, 3) uint8 -> normalized (N, 3, size, size) batch in ``dtype`` and ``memory_format``.

    The same float32 operations as ``eval_transform`` (divide by 255, colour order, subtract the
    mean, divide by the standard deviation), so the values are bit for bit the same on any device.
    The constants are tensors on the batch's device: CUDA divides by a CPU scalar as a multiplication
    by its reciprocal, which can differ from the CPU's division in the last bit.
    """
    pre = preprocessing or BARE_MODEL
    device = pixels.device
    # Planar (NCHW) while computing: a CPU vectorizes over a plane, not over 3 interleaved channels.
    x = pixels.permute(0, 3, 1, 2).contiguous()
    if pre.colour_order == "BGR":
        x = _flip_channels(x)
    scale, mean, std = _constants(tuple(pre.mean), tuple(pre.std), device)
    x = x.float().div_(scale).sub_(mean).div_(std)
    return x.to(dtype, memory_format=memory_format)


@functools.lru_cache(maxsize=16)
def _constants(mean: tuple[float, ...], std: tuple[float, ...],
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """255, the mean and the std as float32 tensors on ``device``, made once: making a tensor from
    Python numbers on a GPU is a blocking copy, which would stall every batch."""
    with torch.inference_mode(False):  # usable inside and outside inference mode
        return (torch.full((1, 1, 1, 1), 255.0, device=device),
                torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1).to(device),
                torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1).to(device))


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
