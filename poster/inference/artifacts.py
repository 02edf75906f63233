"""Compiled models built ahead of time: a TorchInductor package file per checkpoint, format and machine.

``torch.export`` captures the network for one face, and AOTInductor compiles it into a package
file (``.pt2``): generated C++ with every convolution and linear weight frozen in, packed once, and
the element-wise work (PReLU, residual additions, layer norms, softmax) fused into its neighbours.
Exporting and compiling trace with ``torch.fx``, which swaps ``nn.Module.__call__`` for the whole
process while it runs, so ``build_artifact`` runs only in a process of its own (``python -m poster
accelerate``); the serving process only loads the finished file, which takes a second or two and traces
nothing.

Files are cached under a key of everything that makes them differ: the package format, the weights'
sha256, the architecture, the number format, the device kind (on a CPU, its vector instructions)
and the torch version.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import uuid
from pathlib import Path

import torch
from torch import nn

from .transforms import preprocessing_of

ENV_CACHE = "POSTER_ACCELERATED_DIR"
DEFAULT_CACHE = Path.home() / ".cache" / "poster" / "accelerated"
FORMAT_VERSION = 2  # bump when what a package holds changes (2: weights frozen and packed)


@functools.lru_cache(maxsize=1)
def has_cpp_compiler() -> bool:
    """Whether Inductor finds a C++ compiler (``$CXX``, g++, c++ or clang++); looked up once."""
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c)


def cache_dir() -> Path:
    """Where packages are kept: ``$POSTER_ACCELERATED_DIR``, else ``~/.cache/poster/accelerated``."""
    return Path(os.environ.get(ENV_CACHE) or DEFAULT_CACHE)


def artifact_key(sha256: str, arch: str, dtype: torch.dtype, device_kind: str = "cpu") -> str:
    """The cache key of one package: package format, weights, architecture, number format, device, torch."""
    parts = (f"v{FORMAT_VERSION}", sha256, arch, str(dtype).removeprefix("torch."), device_kind, torch.__version__)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def machine_kind(device_kind: str) -> str:
    """``device_kind``, and on a CPU the vector instructions a package built here is made for.

    A package's kernels and oneDNN's packed weights use the instructions of the CPU that built it,
    so a cache on a disk that several machines share must not hand it to a CPU without them.
    """
    if device_kind != "cpu":
        return device_kind
    features = [torch.backends.cpu.get_cpu_capability().lower()]
    for name in ("avx512_bf16", "amx_tile"):  # what oneDNN packs bfloat16 weights for
        supported = getattr(torch.cpu, f"_is_{name}_supported", None)
        if supported is not None and supported():
            features.append(name)
    return "-".join(["cpu", *features])


def artifact_path(model: nn.Module, dtype: torch.dtype, device_kind: str = "cpu",
                  directory: str | Path | None = None) -> Path:
    """Where the package of a loaded checkpoint ``model`` in ``dtype`` is (or will be) kept."""
    info = model.info
    key = artifact_key(info.sha256, info.arch, dtype, machine_kind(device_kind))
    return Path(directory or cache_dir()) / f"{info.arch}-{str(dtype).removeprefix('torch.')}-{key}.pt2"


class _OneFace(nn.Module):
    """The inference forward of one face: ARM's without the batch mean (each face alone)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_alone(x)  # each face alone (ARM's forward mixes the batch)


def example_input(model: nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """A one-face batch of the size the checkpoint's preprocessing makes."""
    size = preprocessing_of(model).input_size
    return torch.zeros(1, 3, size, size, dtype=dtype)


def build_artifact(model: nn.Module, dtype: torch.dtype, path: str | Path) -> Path:
    """Export ``model`` (a plain, loaded CPU checkpoint) in ``dtype`` for one face and compile it
    into the package file ``path``, written atomically.

    Traces the process's modules while it runs: call it only in a process where no other thread
    runs a model (``python -m poster accelerate`` is that process).
    """
    import torch._inductor

    plain = _OneFace(model.to(dtype).eval())
    with torch.no_grad():
        program = torch.export.export(plain, (example_input(model, dtype),), strict=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside its place and renamed: a server polling for it never loads half a file.
    partial = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.partial.pt2")  # AOTInductor wants .pt2
    try:
        # Frozen weights become constants: Inductor packs them for oneDNN once and fuses what follows
        # into the convolutions. It freezes only when gradients are off at this call (with them on it
        # silently compiles plain convolutions, slower than the eager fast copy).
        with torch.no_grad():
            torch._inductor.aoti_compile_and_package(program, package_path=str(partial),
                                                     inductor_configs={"freezing": True})
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def load_artifact(path: str | Path):
    """A callable that runs a package built by ``build_artifact`` (loaded in a second or two, untraced)."""
    import torch._inductor

    return torch._inductor.aoti_load_package(str(path))


__all__ = ["ENV_CACHE", "artifact_key", "artifact_path", "build_artifact", "cache_dir", "example_input",
           "has_cpp_compiler", "load_artifact", "machine_kind"]
