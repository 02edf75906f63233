"""Small operations on 2-D explanation maps (numpy arrays over the face crop)."""
from __future__ import annotations

import numpy as np
from PIL import Image


def upsample(map2d: np.ndarray, size: int | tuple[int, int] = 224) -> np.ndarray:
    """Bilinear resize of a map covering the crop to ``size`` (side, or (height, width)).

    PIL's mode-"F" resize, the same resampling ``FaceCrop.warp_to_photo`` starts with, so a map
    shown on the crop and on the photo agree.
    """
    values = np.asarray(map2d, dtype=np.float32)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"expected a non-empty 2-D map, got shape {values.shape}")
    height, width = (size, size) if isinstance(size, int) else size
    if values.shape == (height, width):
        return values.copy()
    layer = Image.fromarray(np.ascontiguousarray(values)).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(layer, dtype=np.float32).copy()


def normalize(map2d: np.ndarray) -> np.ndarray:
    """Scale a non-negative map to [0, 1] by its maximum; an all-zero map stays zero."""
    values = np.asarray(map2d, dtype=np.float32)
    peak = float(values.max()) if values.size else 0.0
    return values / peak if peak > 0 else np.zeros_like(values)


def relative_to_uniform(map2d: np.ndarray) -> np.ndarray:
    """A distribution over the map's cells in units of the uniform share (1 = evenly spread).

    Makes attention maps of different resolutions comparable on one color scale.
    """
    values = np.asarray(map2d, dtype=np.float32)
    return values * values.size
