"""Deterministic weights from the reference recipe (tests/reference/README.md), saved like the
released files of POSTER++, POSTER and ARM."""
from __future__ import annotations

import contextlib
import json
import sys
import types
import zlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from unittest import mock

import numpy as np
import torch

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
REFERENCE_JSON = REFERENCE_DIR / "poster_v2_reference.json"
REFERENCE_FILES = {"poster-v2": "poster_v2_reference.json", "poster-v1": "poster_v1_reference.json",
                   "arm": "arm_reference.json"}


@lru_cache(maxsize=3)
def reference(arch: str = "poster-v2") -> dict:
    """The original implementation's key list and outputs for the recipe weights."""
    return json.loads((REFERENCE_DIR / REFERENCE_FILES[arch]).read_text())


def recipe_value(name: str, shape: list[int]) -> np.ndarray:
    """The recipe's float64 value for one non-integer entry."""
    n = int(np.prod(shape)) if shape else 1
    z = np.random.RandomState(zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF).standard_normal(n).reshape(shape)
    if name.endswith("running_var"):
        return 0.5 + 0.5 * np.abs(z)
    if name.endswith("running_mean"):
        return 0.1 * z
    if len(shape) >= 2:
        return z / np.sqrt(np.prod(shape[1:]))
    if name.endswith(("weight", "gamma1", "gamma2")):
        return 1 + 0.1 * z
    return 0.1 * z


def _relative_position_index(size: int) -> torch.Tensor:
    coords = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (size - 1)
    return torch.from_numpy(rel[..., 0] * (2 * size - 1) + rel[..., 1]).long()


def recipe_state_dict(num_classes: int = 7, dtype: torch.dtype = torch.float32,
                      arch: str = "poster-v2") -> dict[str, torch.Tensor]:
    """Original-named state dict (no ``module.`` prefix) built by the recipe."""
    keys = reference(arch)[f"checkpoint_keys_{num_classes}cls"]
    state = {}
    for name, shape, kind in keys:
        if kind == "int64":
            if name.endswith("relative_position_index"):
                state[name] = _relative_position_index(int(round(shape[0] ** 0.5)))
            else:
                state[name] = torch.zeros(shape, dtype=torch.int64)
        else:
            state[name] = torch.from_numpy(recipe_value(name, shape)).to(dtype)
    return state


def _foreign_recorder_class() -> type:
    """A class that lives only in a fake ``__main__``-like module, as the training script's did."""
    module = types.ModuleType("poster_training_main")
    exec(  # noqa: S102 - builds a throwaway class for the test fixture only
        "import numpy as np\n"
        "class RecorderMeter1:\n"
        "    def __init__(self, n):\n"
        "        self.total_epoch = n\n"
        "        self.epoch_losses = np.zeros((n, 2), dtype=np.float32)\n"
        "        self.epoch_accuracy = np.arange(2 * n, dtype=np.float32).reshape(n, 2)\n",
        module.__dict__,
    )
    sys.modules[module.__name__] = module
    return module.RecorderMeter1


def write_recipe_checkpoint(path: str | Path, num_classes: int = 7, dtype: torch.dtype = torch.float32) -> Path:
    """Save the recipe weights the way released checkpoints were saved (DataParallel names,
    training bookkeeping, recorder objects of a class the loader cannot import)."""
    path = Path(path)
    recorder_cls = _foreign_recorder_class()
    recorder_cls.__module__ = "__main__"  # as pickled by the original training script
    state = {f"module.{k}": v for k, v in recipe_state_dict(num_classes, dtype).items()}
    checkpoint = {
        "epoch": 1,
        "state_dict": state,
        "best_acc": torch.tensor(0.0),
        "optimizer": {"state": {}, "param_groups": [{"lr": 3.5e-5}]},
        "recorder": recorder_cls(3),
        "recorder1": recorder_cls(3),
    }
    main = sys.modules["__main__"]
    had = hasattr(main, "RecorderMeter1")
    old = getattr(main, "RecorderMeter1", None)
    main.RecorderMeter1 = recorder_cls  # pickle looks the class up by its module and name
    try:
        torch.save(checkpoint, path)
    finally:
        if had:
            main.RecorderMeter1 = old
        else:
            del main.RecorderMeter1
    return path


def reference_input(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The reference batch: RandomState(20260101).standard_normal((2, 3, 224, 224))."""
    shape = tuple(reference()["input"]["shape"])
    return torch.from_numpy(np.random.RandomState(20260101).standard_normal(shape)).to(dtype)


@contextlib.contextmanager
def saved_as_from_gpu() -> Iterator[None]:
    """``torch.save`` inside this block tags every tensor as living on cuda:0, as the released files do."""
    import torch.serialization as serialization

    with mock.patch.object(serialization, "location_tag", lambda storage: "cuda:0"):
        yield


def _shared_zeros(state: dict[str, torch.Tensor]) -> callable:
    """Views of one zero buffer: optimizer moments of the right shapes that cost one storage in the file."""
    size = max(v.numel() for v in state.values())
    buffer = {}

    def zeros_like(t: torch.Tensor) -> torch.Tensor:
        base = buffer.setdefault(t.dtype, torch.zeros(size, dtype=t.dtype))
        return base[: t.numel()].view(t.shape)
    return zeros_like


def write_poster_v1_checkpoint(path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """The recipe weights as POSTER's ``rafdb_best.pth``: ``iter``, DataParallel-named
    ``model_state_dict`` and SAM-around-Adam ``optimizer_state_dict`` (an ``old_p`` per trainable
    parameter; here sharing the parameter's storage, so the file is not twice as large)."""
    path = Path(path)
    state = recipe_state_dict(7, dtype, "poster-v1")
    trainable = [k for k, v in state.items() if v.is_floating_point() and not k.startswith("face_landback.")
                 and not k.endswith(("running_mean", "running_var"))]
    optimizer = {
        "state": {i: {"old_p": state[k]} for i, k in enumerate(trainable)},
        "param_groups": [{"rho": 0.05, "adaptive": False, "lr": 3.5e-5, "betas": (0.9, 0.999), "eps": 1e-8,
                          "weight_decay": 1e-4, "amsgrad": False, "params": list(range(len(trainable)))}],
    }
    checkpoint = {"iter": 1200, "model_state_dict": {f"module.{k}": v for k, v in state.items()},
                  "optimizer_state_dict": optimizer}
    with saved_as_from_gpu():
        torch.save(checkpoint, path)
    return path


def write_arm_checkpoint(path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """The recipe weights as ARM's ``epoch59_acc0.9205.pth``: ``iter``, unprefixed ``model_state_dict``
    and Adam's ``optimizer_state_dict`` (step and both moments per parameter)."""
    path = Path(path)
    state = recipe_state_dict(7, dtype, "arm")
    params = [k for k, v in state.items() if v.is_floating_point() and not k.endswith(("running_mean", "running_var"))]
    zeros_like = _shared_zeros(state)
    optimizer = {
        "state": {i: {"step": torch.tensor(59.0), "exp_avg": zeros_like(state[k]), "exp_avg_sq": zeros_like(state[k])}
                  for i, k in enumerate(params)},
        "param_groups": [{"lr": 1e-4 * 0.9 ** 59, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-4,
                          "amsgrad": False, "initial_lr": 1e-4, "params": list(range(len(params)))}],
    }
    with saved_as_from_gpu():
        torch.save({"iter": 59, "model_state_dict": state, "optimizer_state_dict": optimizer}, path)
    return path
