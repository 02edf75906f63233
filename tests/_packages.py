"""One real ahead-of-time package per test session: ARM in float32, built by the command line in a
child process (under a minute on two cores), for every test of packages to load."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from poster import load_checkpoint
from poster.inference import accelerate
from poster.inference.artifacts import artifact_path
from tests._checkpoints import checkpoint_file


@pytest.fixture(scope="session")
def arm(tmp_path_factory):
    """ARM's deterministic checkpoint, loaded (the plain model)."""
    return load_checkpoint(checkpoint_file(tmp_path_factory.mktemp("arm") / "epoch59_acc0.9205.pth", "arm"))


@pytest.fixture(scope="session")
def arm_package(arm, tmp_path_factory) -> Path:
    """ARM's float32 package, built by ``python -m poster accelerate`` in a child process."""
    folder = tmp_path_factory.mktemp("packages")
    path = artifact_path(arm, torch.float32, "cpu", folder)
    env = accelerate._child_env() | {"TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor")}
    done = subprocess.run([sys.executable, "-m", "poster", "accelerate", arm.info.source, "--out", str(path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert str(path) in done.stdout and path.is_file()
    return path
