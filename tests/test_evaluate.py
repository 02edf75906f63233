"""`python -m poster evaluate` and `poster.evaluation.run.evaluate` on tiny datasets in every layout.

The checkpoint holds the deterministic weights saved like a released file, built
once per module; datasets hold a handful of real face photos, as a forward pass costs ~0.1 s.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as sk

from poster import load_checkpoint
from poster import cli
from poster.cli import evaluate as evaluate_module
from poster.data.datasets import ImageDataset, list_images
from poster.devices import pick_device
from poster.errors import PosterError
from poster.evaluation.run import evaluate
from poster.models.poster_v2 import PosterV2Weights
from poster.data.sample_faces import write_imagefolder
from tests._data import write_csv, write_rafdb, write_unreadable
from tests._checkpoints import checkpoint_file

RAF = PosterV2Weights.RAF_DB.value
# The deterministic weights predict classes the tiny datasets lack; scikit-learn warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
BASE_COLUMNS = ["path", "label", "label_name", "pred", "pred_name"]
TAIL_COLUMNS = ["confidence", "margin", "loss", "correct"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The released file name tells the loader it is the RAF-DB checkpoint (class order, 92.21 %).
    return checkpoint_file(tmp_path_factory.mktemp("weights") / RAF.file_name)


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> torch.nn.Module:
    return load_checkpoint(checkpoint)


@pytest.fixture
def cached_model(monkeypatch: pytest.MonkeyPatch, model: torch.nn.Module) -> torch.nn.Module:
    """Let the command reuse the module's model instead of loading the file again."""
    monkeypatch.setattr(evaluate_module, "load_checkpoint", lambda *args, **kwargs: model)
    return model


def check_table(table: pd.DataFrame, expected: list[tuple[str, int]]) -> None:
    """Schema, one row per expected image, and columns consistent with each other."""
    prob_columns = [f"prob_{name}" for name in RAF.class_names]
    assert list(table.columns) == BASE_COLUMNS + prob_columns + TAIL_COLUMNS
    assert list(zip(table.path, table.label.tolist(), strict=True)) == expected
    assert table.label.dtype == np.int64 and table.pred.dtype == np.int64 and table.correct.dtype == bool
    probs = table[prob_columns].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-9)
    rows = np.arange(len(table))
    np.testing.assert_array_equal(table.pred, probs.argmax(axis=1))
    np.testing.assert_allclose(table.confidence, probs.max(axis=1))
    np.testing.assert_allclose(table.margin, np.sort(probs, axis=1)[:, -1] - np.sort(probs, axis=1)[:, -2])
    np.testing.assert_allclose(table.loss, -np.log(probs[rows, table.label]), rtol=1e-6)
    np.testing.assert_array_equal(table.correct, table.pred == table.label)
    assert table.label_name.tolist() == [RAF.class_names[i] for i in table.label]
    assert table.pred_name.tolist() == [RAF.class_names[i] for i in table.pred]


def check_metrics(info: dict, table: pd.DataFrame) -> None:
    """run.json's metrics (percent) equal scikit-learn's on the same predictions."""
    y, p = table.label, table.pred
    assert info["num_images"] == len(table) == sk.confusion_matrix(y, p, labels=range(7)).sum()
    assert info["accuracy"] == pytest.approx(100 * sk.accuracy_score(y, p))
    assert info["mean_class_accuracy"] == pytest.approx(100 * sk.balanced_accuracy_score(y, p))
    assert info["macro_f1"] == pytest.approx(100 * sk.f1_score(y, p, average="macro", zero_division=0))


@pytest.mark.slow  # a whole evaluation
def test_evaluate_function_with_a_worker(tmp_path: Path, model: torch.nn.Module) -> None:
    expected = write_imagefolder(tmp_path, [0, 3, 6], RAF.folder_names)
    dataset = ImageDataset(list_images(tmp_path, RAF.class_names, RAF.folder_names))
    table = evaluate(model, dataset, batch_size=2, workers=1, progress=False)
    check_table(table, expected)
    assert dataset.skipped == []
    # The same logits as a direct forward pass of the first image.
    with torch.inference_mode():
        direct = torch.softmax(model(dataset[0][0][None]).double(), 1)[0].numpy()
    np.testing.assert_allclose(table.iloc[0][[f"prob_{n}" for n in RAF.class_names]].to_numpy(float),
                               direct, atol=1e-5)


@pytest.mark.slow  # a whole evaluation
def test_command_on_rafdb_release_with_problems(tmp_path: Path, checkpoint: Path, model: torch.nn.Module,
                                                capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "RAF"
    good = write_rafdb(data, test_labels=[1, 4, 7, 6, 5, 9], train_labels=[3])
    write_unreadable(data / good[3][0])                  # test_0004: unreadable image
    (data / good[4][0]).unlink()                        # test_0005: missing file
    out = tmp_path / "runs" / "raf"

    rc = cli.main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
                   "--workers", "1", "--batch-size", "2", "--thumbnails"])

    assert rc == 0
    info = json.loads((out / "run.json").read_text())
    table = pd.read_parquet(out / "predictions.parquet")
    kept = [(path, raf - 1) for path, raf in good[:3]]
    check_table(table, kept)
    check_metrics(info, table)
    assert info["skipped"] == [
        {"path": "Image/aligned/test_0005_aligned.jpg", "reason": "missing file"},
        {"path": "Image/aligned/test_0006_aligned.jpg",
         "reason": "label 9 not in RAF-DB's 1..7 (EmoLabel/list_patition_label.txt:7)"},
        {"path": "Image/aligned/test_0004_aligned.jpg",
         "reason": "unreadable image (cannot identify image file "
                   f"'{data / 'Image/aligned/test_0004_aligned.jpg'}')"},
    ]
    assert info["num_skipped"] == 3
    assert (info["checkpoint"], info["checkpoint_sha256"], info["checkpoint_dataset"]) == (
        "raf-db", model.info.sha256, "raf-db")
    assert info["class_names"] == list(RAF.class_names)
    assert info["published_accuracy"] == 92.21 and info["metrics_unit"] == "percent"
    assert (info["layout"], info["split"], info["device"], info["dataset_root"]) == ("rafdb", "test", "cpu", str(data))
    assert datetime.fromisoformat(info["date"]).tzinfo is not None
    assert info["duration_s"] > 0 and info["images_per_second"] > 0
    assert sorted(p.relative_to(out / "thumbs").as_posix() for p in (out / "thumbs").rglob("*.jpg")) == \
        [path for path, _ in kept]
    out_text = capsys.readouterr().out
    assert "skipped 3:" in out_text and "missing file" in out_text and "(published 92.21 %)" in out_text


def test_command_on_csv_with_limit_and_default_out(tmp_path: Path, cached_model: torch.nn.Module,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    csv_path = write_csv(tmp_path / "faces" / "labels.csv",
                         [("a.jpg", "Happiness"), ("b.jpg", "fear"), ("c.jpg", "0"), ("d.jpg", "Neutral")])
    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", "--data", str(csv_path), "--limit", "2", "--workers", "0"]) == 0
    out = tmp_path / "runs" / "raf-db-test"
    table = pd.read_parquet(out / "predictions.parquet")
    check_table(table, [("a.jpg", 3), ("c.jpg", 0)])
    info = json.loads((out / "run.json").read_text())
    check_metrics(info, table)
    assert (info["layout"], info["dataset"], info["thumbnails"]) == ("csv", str(csv_path), False)
    assert not (out / "thumbs").exists()


def test_command_says_which_folder_served_as_test_split(tmp_path: Path, cached_model: torch.nn.Module,
                                                       capsys: pytest.CaptureFixture) -> None:
    write_imagefolder(tmp_path / "data", [2], RAF.folder_names, split_folder="valid")
    rc = cli.main(["evaluate", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--workers", "0"])
    assert rc == 0
    assert f"used {tmp_path / 'data' / 'valid'} as the test split" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["dataset"] == str(tmp_path / "data" / "valid")


class InterruptedModel(torch.nn.Module):
    """The real model until ``batches`` forward passes are done, then Ctrl-C."""

    def __init__(self, model: torch.nn.Module, batches: int) -> None:
        super().__init__()
        self.model, self.info, self.left = model, model.info, batches
        self.faces_interact = model.faces_interact

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return self.model(x)


@pytest.mark.parametrize("earlier_run", [False, True])
def test_interruption_leaves_no_half_written_run(tmp_path: Path, model: torch.nn.Module, earlier_run: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    write_imagefolder(tmp_path / "data", [0, 1, 2], RAF.folder_names)
    out = tmp_path / "runs" / "raf-db-test"
    if earlier_run:
        out.mkdir(parents=True)
        (out / "run.json").write_text('{"earlier": true}')
    monkeypatch.setattr(evaluate_module, "load_checkpoint", lambda *a, **k: InterruptedModel(model, batches=1))
    monkeypatch.setattr(evaluate_module, "fast_copy", lambda model, dtype=None: model)  # keep the interruption

    # A worker still loading (and writing thumbnails) must not leave files behind.
    rc = cli.main(["evaluate", "--data", str(tmp_path / "data"), "--out", str(out), "--batch-size", "1",
                   "--workers", "1", "--thumbnails"])

    assert rc == 130
    assert [p.name for p in (tmp_path / "runs").iterdir()] == (["raf-db-test"] if earlier_run else [])
    if earlier_run:
        assert [p.name for p in out.iterdir()] == ["run.json"]
        assert json.loads((out / "run.json").read_text()) == {"earlier": True}


def test_a_completed_run_replaces_the_earlier_one(tmp_path: Path, cached_model: torch.nn.Module) -> None:
    write_imagefolder(tmp_path / "data", [4], RAF.folder_names)
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")
    (out / "stale.txt").write_text("from the earlier run")
    assert cli.main(["evaluate", "--data", str(tmp_path / "data"), "--out", str(out), "--workers", "0"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["predictions.parquet", "run.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_refuses_to_replace_a_folder_that_is_not_a_run(tmp_path: Path, cached_model: torch.nn.Module,
                                                       capsys: pytest.CaptureFixture) -> None:
    write_imagefolder(tmp_path / "data", [4], RAF.folder_names)
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("years of work")
    rc = cli.main(["evaluate", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "precious")])
    assert rc == 1
    assert "is not a run folder" in capsys.readouterr().err
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "years of work"


def test_device_names_are_checked() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(PosterError, match="unknown device 'gpu'"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        assert pick_device(None) == torch.device("cpu")
        with pytest.raises(PosterError, match="no CUDA GPU"):
            pick_device("cuda")
    assert pick_device("cpu", local_rank=1) == torch.device("cpu")


def test_unusable_dataset_is_a_one_line_error(tmp_path: Path, cached_model: torch.nn.Module,
                                              capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty" / "test").mkdir(parents=True)
    rc = cli.main(["evaluate", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 1 and lines[-1].startswith("error: no usable images in") and err.count("error:") == 1
    assert lines[:-1] == ["raf-db: raf-db class order (inferred from the file name: rafdb_best.pth is the "
                          "released RAF-DB file)"]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # a whole evaluation
def test_fast_mode_runs_in_bfloat16(tmp_path: Path, checkpoint: Path, model: torch.nn.Module) -> None:
    write_imagefolder(tmp_path / "data", [0, 3], RAF.folder_names)
    out = tmp_path / "run"
    assert cli.main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "data"),
                     "--out", str(out), "--workers", "0", "--dtype", "bfloat16"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["dtype"] == "bfloat16" and info["num_images"] == 2
    fast = pd.read_parquet(out / "predictions.parquet")
    full = evaluate(model, ImageDataset(list_images(tmp_path / "data", RAF.class_names, RAF.folder_names)),
                    progress=False)
    prob_columns = [f"prob_{name}" for name in RAF.class_names]
    np.testing.assert_allclose(fast[prob_columns].to_numpy(), full[prob_columns].to_numpy(), atol=0.05)
