"""Deterministic weights in the original implementations' names, saved like the released files.

Every value follows from the entry's name and shape alone (``deterministic_value``), so the
original code and this project can be given the very same weights: the exactness checks compare
their outputs, and the benchmarks and an offline app run on files that cost what the released ones
cost without downloading anything. The weights are untrained: their predictions mean nothing.
"""
from __future__ import annotations

import contextlib
import json
import sys
import zlib
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from unittest import mock

import numpy as np
import torch

ORIGINAL_KEYS = Path(__file__).with_name("original_keys.json")


@lru_cache(maxsize=1)
def _all_original_keys() -> dict[str, dict[str, list]]:
    return json.loads(ORIGINAL_KEYS.read_text())


def original_keys(arch: str, num_classes: int = 7) -> list[tuple[str, list[int], str]]:
    """``(name, shape, kind)`` of every ``state_dict()`` entry of the original model (no ``module.``
    prefix): what the released files hold. ``kind`` is ``"int64"`` or ``"float"``."""
    try:
        keys = _all_original_keys()[arch][str(num_classes)]
    except KeyError:
        known = {a: sorted(int(n) for n in counts) for a, counts in _all_original_keys().items()}
        raise KeyError(f"no original key list for {arch} with {num_classes} classes; known: {known}") from None
    return [(name, list(shape), kind) for name, shape, kind in keys]


def deterministic_value(name: str, shape: list[int]) -> np.ndarray:
    """The float64 value of one floating-point entry, from its name and shape.

    ``z`` is ``RandomState(crc32(name) & 0x7fffffff).standard_normal(shape)``; the entry is
    ``0.5 + 0.5 |z|`` for a running variance, ``0.1 z`` for a running mean, ``z / sqrt(fan_in)`` for
    a tensor of two or more dimensions, ``1 + 0.1 z`` for other weights and layer scales, ``0.1 z``
    for the rest.
    """
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


def deterministic_state_dict(arch: str, num_classes: int = 7,
                             dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The original model's state dict (original names, no ``module.`` prefix) with deterministic values.

    Integer entries keep what the model computes itself: 0, and the Swin relative-position index.
    """
    state = {}
    for name, shape, kind in original_keys(arch, num_classes):
        if kind == "int64":
            if name.endswith("relative_position_index"):
                state[name] = _relative_position_index(int(round(shape[0] ** 0.5)))
            else:
                state[name] = torch.zeros(shape, dtype=torch.int64)
        else:
            state[name] = torch.from_numpy(deterministic_value(name, shape)).to(dtype)
    return state


def _recorder_class() -> type:
    """A fresh class pickled as ``__main__.RecorderMeter1``, as the original training script's recorder
    was: a class no loader can import."""
    class RecorderMeter1:
        def __init__(self, n: int) -> None:
            self.total_epoch = n
            self.epoch_losses = np.zeros((n, 2), dtype=np.float32)
            self.epoch_accuracy = np.arange(2 * n, dtype=np.float32).reshape(n, 2)

    RecorderMeter1.__module__ = "__main__"
    RecorderMeter1.__qualname__ = "RecorderMeter1"
    return RecorderMeter1


def write_poster_v2_checkpoint(path: str | Path, num_classes: int = 7, dtype: torch.dtype = torch.float32,
                               state: dict[str, torch.Tensor] | None = None) -> Path:
    """The deterministic weights saved as POSTER++'s released files were: DataParallel names, training
    bookkeeping, and recorder objects of a class no loader can import (pickled from ``__main__``).
    ``state``: those weights if the caller has them already (``deterministic_state_dict``)."""
    path = Path(path)
    recorder_cls = _recorder_class()
    state = state if state is not None else deterministic_state_dict("poster-v2", num_classes, dtype)
    state = {f"module.{k}": v for k, v in state.items()}
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


@contextlib.contextmanager
def saved_as_from_gpu() -> Iterator[None]:
    """``torch.save`` inside this block tags every tensor as living on cuda:0, as the released files do."""
    import torch.serialization as serialization

    with mock.patch.object(serialization, "location_tag", lambda storage: "cuda:0"):
        yield


def _shared_zeros(state: dict[str, torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Views of one zero buffer: optimizer moments of the right shapes that cost one storage in the file."""
    size = max(v.numel() for v in state.values())
    buffer: dict[torch.dtype, torch.Tensor] = {}

    def zeros_like(t: torch.Tensor) -> torch.Tensor:
        base = buffer.setdefault(t.dtype, torch.zeros(size, dtype=t.dtype))
        return base[: t.numel()].view(t.shape)
    return zeros_like


def write_poster_v1_checkpoint(path: str | Path, dtype: torch.dtype = torch.float32,
                               state: dict[str, torch.Tensor] | None = None) -> Path:
    """The deterministic weights as POSTER's ``rafdb_best.pth``: ``iter``, DataParallel-named
    ``model_state_dict`` and SAM-around-Adam ``optimizer_state_dict`` (an ``old_p`` per trainable
    parameter; here sharing the parameter's storage, so the file is not twice as large)."""
    path = Path(path)
    state = state if state is not None else deterministic_state_dict("poster-v1", 7, dtype)
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


def write_arm_checkpoint(path: str | Path, dtype: torch.dtype = torch.float32,
                         state: dict[str, torch.Tensor] | None = None) -> Path:
    """The deterministic weights as ARM's ``epoch59_acc0.9205.pth``: ``iter``, unprefixed
    ``model_state_dict`` and Adam's ``optimizer_state_dict`` (step and both moments per parameter)."""
    path = Path(path)
    state = state if state is not None else deterministic_state_dict("arm", 7, dtype)
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


def write_checkpoint(path: str | Path, arch: str, num_classes: int = 7,
                     dtype: torch.dtype = torch.float32, state: dict[str, torch.Tensor] | None = None) -> Path:
    """The deterministic weights of ``arch`` saved as its released file was (``state``: those weights,
    ``deterministic_state_dict(arch, num_classes, dtype)``, where the caller has them already)."""
    if arch == "poster-v2":
        return write_poster_v2_checkpoint(path, num_classes, dtype, state)
    writers = {"poster-v1": write_poster_v1_checkpoint, "arm": write_arm_checkpoint}
    if arch not in writers:
        raise KeyError(f"unknown architecture {arch!r}; known: poster-v2, {', '.join(writers)}")
    if num_classes != 7:
        raise ValueError(f"{arch} was released with 7 classes only, not {num_classes}")
    return writers[arch](path, dtype, state)
