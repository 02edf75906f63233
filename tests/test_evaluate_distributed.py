"""`torchrun --nproc_per_node 2 -m poster evaluate` on the CPU (gloo): the processes share the batches
and rank 0 writes one run, with the predictions of a single-process run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from poster import cli
from poster.models.poster_v2 import PosterV2Weights
from tests._checkpoints import checkpoint_file
from tests._data import write_rafdb, write_unreadable

RAF = PosterV2Weights.RAF_DB.value
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")


@pytest.mark.slow  # torchrun starts two processes of their own; a whole evaluation in each
def test_two_processes_write_the_run_one_process_writes(tmp_path: Path) -> None:
    checkpoint = checkpoint_file(tmp_path / RAF.file_name)
    data = tmp_path / "RAF"
    good = write_rafdb(data, test_labels=[1, 4, 7, 6, 5])
    write_unreadable(data / good[2][0])  # in the second batch: the second process skips it
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--device", "cpu",
            "--dtype", "float32", "--batch-size", "2", "--workers", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    both = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "poster", *args, "--out", str(tmp_path / "two")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert both.returncode == 0, both.stderr[-2000:]
    assert both.stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    assert cli.main([*args, "--out", str(tmp_path / "one")]) == 0

    two, one = (json.loads((tmp_path / name / "run.json").read_text()) for name in ("two", "one"))
    assert (two["world_size"], one["world_size"]) == (2, 1)
    assert two["num_images"] == one["num_images"] == 4 and two["skipped"] == one["skipped"]
    assert two["skipped"][0]["path"] == good[2][0]
    shared, alone = (pd.read_parquet(tmp_path / name / "predictions.parquet") for name in ("two", "one"))
    assert shared.path.tolist() == alone.path.tolist() and shared.pred.tolist() == alone.pred.tolist()
    probabilities = [f"prob_{name}" for name in RAF.class_names]
    np.testing.assert_allclose(shared[probabilities].to_numpy(), alone[probabilities].to_numpy(), rtol=0, atol=1e-5)
    assert not list(tmp_path.glob(".two.*"))  # no staging folder left behind
