"""Where the work runs: one rule for every command, the predictor and the app."""
from __future__ import annotations

import torch

from .errors import PosterError


def pick_device(requested: str | None = None, *, local_rank: int | None = None) -> torch.device:
    """The device asked for, else CUDA, then Apple MPS, then the CPU.

    ``local_rank`` is a torchrun process's GPU: a bare ``cuda`` (asked for or chosen) becomes
    ``cuda:local_rank``. Unknown names and GPUs that are not here are one-line errors.
    """
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise PosterError(f"unknown device {requested!r}; expected cpu, cuda, cuda:N or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise PosterError(f"--device {requested}: no CUDA GPU is available here")
        if device.type == "mps" and not _mps_available():
            raise PosterError(f"--device {requested}: Apple's MPS is not available here")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif _mps_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if device.type == "cuda" and device.index is None and local_rank is not None:
        device = torch.device("cuda", local_rank)
    return device


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()
