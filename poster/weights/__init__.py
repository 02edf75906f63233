"""Weight files: the registry of released checkpoints, loading, the safe unpickler, locating and downloading."""
from .checkpoints import (CheckpointInfo, convert_checkpoint, count_parameters, describe_dataset, load_checkpoint,
                          read_weights, verify_checkpoint)
from .download import OfflineError, download, download_many
from .locate import default_checkpoint, resolve, search_dirs
from .registry import ARCHITECTURES, DATASET_KEYS, create_model, get_weights, list_weights
from .safe_pickle import UnsafePickleError, safe_torch_load

__all__ = [
    "CheckpointInfo", "load_checkpoint", "read_weights", "convert_checkpoint", "verify_checkpoint",
    "count_parameters", "describe_dataset", "download", "download_many", "OfflineError", "default_checkpoint",
    "resolve", "search_dirs", "ARCHITECTURES", "DATASET_KEYS", "get_weights", "list_weights", "create_model", "safe_torch_load", "UnsafePickleError",
]
