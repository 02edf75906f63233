"""POSTER++ facial expression recognition: the model, its checkpoints, faces and predictions."""
from .weights.checkpoints import CheckpointInfo, count_parameters, load_checkpoint
from .errors import CheckpointError, DatasetError, DownloadError, ImageError, PosterError
from .models import PosterOutput, PosterV2
from .weights.registry import BackboneWeights, PosterV2Weights

__all__ = [
    "PosterV2", "PosterOutput", "load_checkpoint", "CheckpointInfo", "count_parameters",
    "PosterV2Weights", "BackboneWeights", "PosterError", "CheckpointError", "ImageError",
    "DatasetError", "DownloadError",
]
