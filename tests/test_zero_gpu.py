"""Hugging Face ZeroGPU starts CUDA only inside ``@spaces.GPU`` functions: importing the packages must
not initialise it, even where a GPU is reported (the GPU-decorated handlers hold the work)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a Python process of its own imports every module

ROOT = Path(__file__).resolve().parents[1]

# Reports a GPU as ZeroGPU's main process does, and records any CUDA initialisation instead of doing it.
PROBE = """
import importlib, pkgutil, torch
calls = []
torch.cuda.is_available = lambda: True
torch.cuda._lazy_init = lambda: calls.append("cuda initialised")
for package in ("poster", "explain", "data_explorer", "demo"):
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if not info.name.endswith("__main__"):  # runs its command when imported
            importlib.import_module(info.name)
print(calls, torch.cuda.is_initialized())
"""


def test_importing_every_module_leaves_cuda_alone() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[] False"
