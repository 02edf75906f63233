"""What every explanation of one face offers, whatever the model: the predicted class, the most
probable classes, and a map moved onto the crop or back onto the photo."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from poster.inference.faces import FaceCrop

from .maps import upsample


class ExplainedFace:
    """Behaviour shared by the explanation records; they hold ``image`` (the crop the model saw),
    ``class_names``, ``logits``, ``probabilities`` and ``crop`` (where it came from, if known)."""

    image: np.ndarray
    class_names: tuple[str, ...]
    logits: np.ndarray
    probabilities: np.ndarray
    crop: FaceCrop | None

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.logits))

    @property
    def label(self) -> str:
        return self.class_names[self.predicted]

    def top_classes(self, k: int = 3) -> list[tuple[str, float]]:
        """The k most probable classes with their probabilities, most probable first."""
        order = np.argsort(-self.probabilities)[:k]
        return [(self.class_names[i], float(self.probabilities[i])) for i in order]

    def on_crop(self, map2d: np.ndarray) -> np.ndarray:
        """A map bilinearly upsampled to the crop's pixels."""
        return upsample(map2d, self.image.shape[:2])

    def on_photo(self, map2d: np.ndarray, photo_shape: Sequence[int], crop: FaceCrop | None = None,
                 fill: float = 0.0) -> np.ndarray:
        """A map warped back onto the original photo's (H, W) grid through the crop's transform."""
        crop = crop or self.crop
        if crop is None:
            raise ValueError("this face was given as pixels, not a FaceCrop: pass the crop it came from")
        return crop.warp_to_photo(map2d, photo_shape, fill=fill)
