"""Speed for a loaded checkpoint, as one explicit step that leaves the loaded model and the process alone.

``load_checkpoint`` returns the plain network. ``fast_copy(model, dtype)`` makes a separate copy
for inference: its own weights in ``dtype``, channels-last, and on the CPU the fusions its
architecture declares (``poster.models.fusions``: batch norms folded into their convolutions,
oneDNN-packed weights, activations as post-ops, 1-D convolutions as matrix products). Nothing is
traced, so other threads' models keep running while a copy is made.

``AcceleratedForward`` goes one step further: a TorchInductor package of the network built ahead
of time (``poster.inference.artifacts``) by a separate, low-priority process (``python -m poster
accelerate``), cached on disk and loaded in a thread of its own once it exists. Until it answers,
where the build or the load fails, and for any call the package was not built for (gradients,
another shape, format or device), the eager fast copy answers, so no call waits for a compilation
or a load.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..models.fusions import fuse_for_cpu
from ..weights.registry import create_model_with_state
from .artifacts import artifact_path, example_input, has_cpp_compiler, load_artifact

log = logging.getLogger(__name__)

# "1" switches ahead-of-time packages on. Off by default: a package call holds Python's lock for its
# whole run (about 120 ms for POSTER++ on 2 cores), so every other thread of the server waits for it,
# while the eager copy lets them run between its layers; and on a 2-core AVX2 CPU a package runs
# POSTER++ only about 1.1x the eager copy, which the webcam in a browser did not show (README, Speed).
ENV_ACCELERATE = "POSTER_ACCELERATE"
COMPILING, COMPILED, EAGER = "compiling", "compiled", "eager"
MAX_FACES = 16  # beyond this a batch runs eagerly: one eager batch beats many single calls
LOOK_EVERY_S = 1.0  # how often a call looks for a package still being built

_builds_lock = threading.Lock()
_builds: dict[Path, subprocess.Popen] = {}  # one build per package file in this process


def fast_copy(model: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """A copy of the loaded checkpoint ``model`` made for inference speed, in ``dtype`` (default:
    the model's own), in eval mode, with ``model.info``; ``model`` itself is not changed."""
    param = next(model.parameters())
    dtype = dtype or param.dtype
    # Weights made outside inference mode keep version counters, so packed copies can be cached.
    with torch.inference_mode(False), torch.no_grad():
        copy = create_model_with_state(model.info.arch, model.state_dict(), model.info.num_classes, dtype)
        copy = copy.to(param.device, memory_format=torch.channels_last).eval()
    copy.info = model.info
    if param.device.type == "cpu":
        fuse_for_cpu(copy)
    return copy


def accelerate_wanted() -> bool:
    """Whether ahead-of-time packages are used here: switched on by ``POSTER_ACCELERATE=1`` and a
    C++ compiler exists to build them."""
    if os.environ.get(ENV_ACCELERATE, "").strip().lower() not in ("1", "true", "yes", "on"):
        return False
    return has_cpp_compiler()


def build_command(source: str | Path, arch: str, dtype: torch.dtype, path: Path) -> list[str]:
    """The lowest-priority command line that builds one package (``python -m poster accelerate --idle``:
    it computes only on cycles no request wants; ``nice`` where that is not available)."""
    command = [sys.executable, "-m", "poster", "accelerate", str(source), "--arch", arch,
               "--dtype", str(dtype).removeprefix("torch."), "--out", str(path), "--idle"]
    nice = shutil.which("nice")
    return [nice, "-n", "19", *command] if nice else command


class AcceleratedForward:
    """``model``'s inference forward, through its ahead-of-time package once that exists.

    ``model`` answers meanwhile: pass the eager fast copy (``fast_copy``). ``state`` is
    ``"compiling"`` while the package is built or loaded, ``"compiled"`` once it answers, ``"eager"`` when
    there is none (``reason`` says why). ``build=True`` starts the separate build process where
    the package is missing.
    """

    def __init__(self, model: nn.Module, *, build: bool = True, directory: str | Path | None = None,
                 loader: Callable[[Path], Callable] = load_artifact) -> None:
        self.model = model
        self._eager = model.forward_alone
        param = next(model.parameters())
        self.dtype, self.device = param.dtype, param.device
        self.example_shape = tuple(example_input(model, self.dtype).shape)
        self.path = artifact_path(model, self.dtype, self.device.type, directory)
        self.state, self.reason = COMPILING, ""
        self._loader = loader
        self._runner: Callable | None = None
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()  # one package call at a time: the cores are shared anyway
        self._looking = threading.Lock()
        self._next_look = 0.0
        self._loading: threading.Thread | None = None
        if self.device.type != "cpu":
            self.state, self.reason = EAGER, "packages are built for the CPU only"
        elif build and not self.path.exists():
            self._start_build()
        self.poll()

    def _start_build(self) -> None:
        if not accelerate_wanted():
            self.state, self.reason = EAGER, "ahead-of-time packages are off here (POSTER_ACCELERATE is not 1, or no C++ compiler)"
            return
        info = self.model.info
        with _builds_lock:
            process = _builds.get(self.path)
            if process is None or process.poll() not in (None, 0):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                process = _spawn(build_command(info.source, info.arch, self.dtype, self.path),
                                 self.path.with_suffix(".log"))
                _builds[self.path] = process
        self._process = process

    def poll(self) -> bool:
        """Whether the package answers. Looks for it at most once a second, and loads one that has
        appeared in a thread of its own: a load takes up to two seconds, which no call waits for."""
        if self._runner is not None or self.state == EAGER:
            return self._runner is not None
        now = time.monotonic()
        if now < self._next_look or not self._looking.acquire(blocking=False):
            return False  # not yet, or another thread is looking right now
        try:
            self._next_look = now + LOOK_EVERY_S
            self._look()
        finally:
            self._looking.release()
        return self._runner is not None

    def _look(self) -> None:
        if self._loading is not None:
            return  # found, and being loaded
        if self.path.exists():
            self._loading = threading.Thread(target=self._load, name="poster-package-load", daemon=True)
            self._loading.start()
            return
        code = self._process.poll() if self._process is not None else None
        if self._process is None or code not in (None, 0):
            self.state = EAGER
            self.reason = ("no package built" if self._process is None else
                           f"the build failed (exit {code}; see {self.path.with_suffix('.log')})")

    def _load(self) -> None:
        try:
            runner = self._loader(self.path)
            with torch.inference_mode():  # the first call is the slowest: here, not in a visitor's request
                runner(torch.zeros(self.example_shape, dtype=self.dtype, device=self.device))
        except Exception as exc:  # noqa: BLE001 - a bad package leaves the eager model answering
            self.state, self.reason = EAGER, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
            log.warning("loading %s failed, the eager model answers: %s", self.path.name, self.reason)
            return
        self._runner, self.state = runner, COMPILED

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the build process (if any) and for the package to load; whether it answers."""
        if self._process is not None:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
        self._next_look = 0.0
        self.poll()
        loading = self._loading
        if loading is not None:
            loading.join(timeout)
        return self._runner is not None

    def takes(self, x: torch.Tensor) -> bool:
        """Whether the package computes ``x`` (else the eager model does)."""
        return (self._runner is not None and not torch.is_grad_enabled() and x.ndim == 4 and x.dtype == self.dtype
                and x.device == self.device and 0 < x.shape[0] <= MAX_FACES
                and tuple(x.shape[1:]) == self.example_shape[1:])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.dtype in (torch.bfloat16, torch.float16):
            x = x.to(self.dtype)  # a fast copy takes float32 batches and casts them itself
        self.poll()
        if not self.takes(x):
            return self._eager(x)
        with self._lock:
            return torch.cat([self._runner(x[i:i + 1].contiguous()) for i in range(x.shape[0])])


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen:
    """Start a build process, its output going to ``log_path``."""
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=_child_env())


def _child_env() -> dict[str, str]:
    """This environment, with the folder holding ``poster`` on the child's import path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


__all__ = ["AcceleratedForward", "fast_copy", "accelerate_wanted", "build_command", "ENV_ACCELERATE",
           "COMPILING", "COMPILED", "EAGER", "MAX_FACES"]
