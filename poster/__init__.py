"""POSTER++ facial expression recognition: the model, its checkpoints, faces and predictions."""
from __future__ import annotations

from typing import Any

from .errors import CheckpointError, DatasetError, DownloadError, ImageError, PosterError
from .models import IR50Weights, MobileFaceNetWeights, ModelOutput, PosterV2, PosterV2Weights
from .weights.checkpoints import CheckpointInfo, count_parameters, load_checkpoint

__all__ = [
    "PosterV2", "ModelOutput", "Predictor", "load_checkpoint", "CheckpointInfo", "count_parameters",
    "PosterV2Weights", "IR50Weights", "MobileFaceNetWeights", "PosterError", "CheckpointError", "ImageError",
    "DatasetError", "DownloadError",
]


def __getattr__(name: str) -> Any:
    # The predictor brings in the face detector; loading it only when asked keeps `import poster`
    # and `python -m poster --help` as quick as the model and weights alone.
    if name == "Predictor":
        from .inference.predictor import Predictor
        return Predictor
    raise AttributeError(f"module 'poster' has no attribute {name!r}")
