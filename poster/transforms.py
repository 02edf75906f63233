"""Preprocessing exactly as the original POSTER++ evaluation: resize to 224, ImageNet statistics."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224


def eval_transform(size: int = INPUT_SIZE) -> T.Compose:
    """PIL image -> normalized (3, size, size) float tensor, as the original test loader."""
    return T.Compose([
        T.Resize((size, size)),
        T.ToTensor(),
        T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ])


def to_batch(images: list[np.ndarray], size: int = INPUT_SIZE) -> torch.Tensor:
    """HxWx3 uint8 RGB arrays -> normalized (N, 3, size, size) float32 batch.

    Crops that are already ``size`` x ``size`` skip the resize, so this is exact for aligned crops.
    """
    if not images:
        return torch.empty(0, 3, size, size)
    arrays = []
    for image in images:
        if image.shape[:2] != (size, size):
            image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
        arrays.append(image)
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch - mean) / std


def denormalize(batch: torch.Tensor) -> np.ndarray:
    """Normalized (N, 3, H, W) tensor -> (N, H, W, 3) uint8 images, for display."""
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    images = (batch.float() * std + mean).clamp(0, 1).mul(255).round().byte()
    return images.permute(0, 2, 3, 1).cpu().numpy()
