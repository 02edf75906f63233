"""POSTER and ARM on every path: conversion, the colour order of the weights record, ARM's
evaluation protocols and each face classified alone."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from poster import load_checkpoint
from poster import cli
from poster.weights.checkpoints import convert_checkpoint, read_weights
from poster.inference.predictor import Predictor
from poster.weights.registry import ARCHITECTURES, list_weights
from poster.inference.transforms import denormalize, model_batch, to_batch
from poster.data.sample_faces import face_crops
from tests._data import write_rafdb
from tests._reference import reference_input
from tests._checkpoints import checkpoint_file

pytestmark = pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")


@pytest.fixture(scope="module")
def v1_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checkpoint_file(tmp_path_factory.mktemp("v1") / "rafdb_best.pth", "poster-v1")


@pytest.fixture(scope="module")
def arm_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checkpoint_file(tmp_path_factory.mktemp("arm") / "epoch59_acc0.9205.pth", "arm")


@pytest.fixture(scope="module")
def v1_model(poster_v1_model):
    return poster_v1_model  # the same deterministic weights as v1_file's


@pytest.fixture(scope="module")
def arm_model(arm_file: Path):
    return load_checkpoint(arm_file)


def test_registry_groups_checkpoints_by_architecture() -> None:
    groups = {arch: list_weights(arch) for arch in ARCHITECTURES}
    assert list(dict.fromkeys(w.arch for w in list_weights())) == ["poster-v2", "poster-v1", "arm"]
    assert list_weights() == [w for group in groups.values() for w in group]
    assert [w.key for w in groups["poster-v1"]] == ["poster-v1-raf-db"]
    arm = groups["arm"][0]
    assert [m.value for m in arm.published_metrics] == [92.05, 90.42]
    assert "batches of 64" in arm.published_metrics[0].meaning and arm.gdrive_id == "1v5j0WUxOMeDXOFBVIJaDSnGdYef3KSxO"
    assert groups["poster-v1"][0].gdrive_folder == "1jeCPTGjBL8YgKKB9YrI9TYZywme8gymv"


@pytest.mark.parametrize("which", ["v1", "arm"])
def test_convert_writes_safetensors_with_the_same_logits(which, v1_file, arm_file, v1_model, arm_model, tmp_path):
    source, model = (v1_file, v1_model) if which == "v1" else (arm_file, arm_model)
    out = tmp_path / "converted.safetensors"
    assert cli.main(["convert", str(source), str(out)]) == 0
    _, meta = read_weights(out)
    assert meta["arch"] == model.info.arch and meta["dataset"] == "raf-db"
    assert meta["preprocessing"] == model.info.preprocessing
    converted = load_checkpoint(out)
    x = reference_input(torch.float32)[:1]  # bit-equal logits for one face: the same weights
    with torch.inference_mode():
        assert torch.equal(converted(x), model(x))
    assert converted.info.published_accuracy == 92.05


def test_colour_order_of_the_record_reaches_the_network(v1_model) -> None:
    crop = face_crops()[0]
    assert v1_model.info.preprocessing.colour_order == "BGR"
    bgr = model_batch([crop], v1_model)
    torch.testing.assert_close(bgr, to_batch([np.ascontiguousarray(crop[..., ::-1])]))  # OpenCV-read, unconverted
    np.testing.assert_array_equal(denormalize(bgr, v1_model.info.preprocessing)[0],
                                  denormalize(to_batch([crop]))[0])
    with torch.inference_mode():
        as_bgr, as_rgb = v1_model(bgr), v1_model(to_batch([crop]))
    assert (as_bgr - as_rgb).abs().max() > 1e-3  # RGB fed as RGB is a different input


def test_predictor_uses_colour_order_and_classifies_arm_faces_alone(v1_model, arm_model, face_detector) -> None:
    crops = [np.asarray(c) for c in face_crops()[:3]]
    v1 = Predictor(v1_model, face_detector)
    with torch.inference_mode():
        expected = torch.softmax(v1_model(model_batch(crops, v1_model)), 1).numpy()
    np.testing.assert_allclose(v1.classify(crops), expected, atol=1e-6)
    arm = Predictor(arm_model, face_detector)
    together = arm.classify(crops)
    alone = np.concatenate([arm.classify([c]) for c in crops])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    with torch.inference_mode():
        mixed = torch.softmax(arm_model(model_batch(crops, arm_model)), 1).numpy()
    assert np.abs(mixed - alone).max() > 1e-4  # the published forward would have mixed them


@pytest.mark.slow  # a whole evaluation
def test_arm_evaluation_protocols(tmp_path: Path, arm_file: Path, arm_model, capsys) -> None:
    data = tmp_path / "RAF"
    write_rafdb(data, test_labels=[1, 4, 7, 6, 5])
    runs = {}
    for protocol in ("batch", "alone"):
        out = tmp_path / protocol
        assert cli.main(["evaluate", "--checkpoint", str(arm_file), "--data", str(data), "--out", str(out),
                         "--protocol", protocol, "--dtype", "float32"]) == 0  # float32: compared at 1e-5
        runs[protocol] = (json.loads((out / "run.json").read_text()), pd.read_parquet(out / "predictions.parquet"))
    info, table = runs["batch"]
    assert (info["protocol"], info["batch_size"], info["checkpoint_arch"]) == ("batch", 64, "arm")
    assert "mean over its batch" in info["protocol_description"]
    assert runs["alone"][0]["protocol"] == "alone"
    from PIL import Image

    crops = [np.asarray(Image.open(data / p).convert("RGB")) for p in table.path]
    with torch.inference_mode():
        batch = model_batch(crops, arm_model)
        published, alone = torch.softmax(arm_model(batch), 1), torch.softmax(arm_model.forward_alone(batch), 1)
    probs = [f"prob_{n}" for n in arm_model.info.class_names]
    np.testing.assert_allclose(table[probs].to_numpy(), published.numpy(), atol=1e-5)
    np.testing.assert_allclose(runs["alone"][1][probs].to_numpy(), alone.numpy(), atol=1e-5)
    assert "protocol: batches of 64" in capsys.readouterr().err


@pytest.mark.slow  # a whole evaluation
def test_poster_v1_evaluation_feeds_bgr(tmp_path: Path, v1_file: Path, v1_model) -> None:
    data = tmp_path / "RAF"
    write_rafdb(data, test_labels=[1, 4])
    out = tmp_path / "run"
    assert cli.main(["evaluate", "--checkpoint", str(v1_file), "--data", str(data), "--out", str(out),
                     "--dtype", "float32"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert (info["colour_order"], info["protocol"], info["published_accuracy"]) == ("BGR", "independent", 92.05)
    table = pd.read_parquet(out / "predictions.parquet")
    from PIL import Image

    crops = [np.asarray(Image.open(data / p).convert("RGB").resize((224, 224), Image.BILINEAR)) for p in table.path]
    with torch.inference_mode():
        expected = torch.softmax(v1_model(model_batch(crops, v1_model)), 1).numpy()
    probs = [f"prob_{n}" for n in v1_model.info.class_names]
    np.testing.assert_allclose(table[probs].to_numpy(), expected, atol=2e-3)  # torchvision vs PIL resize


def test_convert_of_unknown_poster_v1_file_needs_dataset(v1_file: Path, tmp_path: Path) -> None:
    source = tmp_path / "mine.pth"
    source.write_bytes(v1_file.read_bytes())
    with pytest.raises(Exception, match="--dataset NAME"):
        convert_checkpoint(source, tmp_path / "out.safetensors")
    out = convert_checkpoint(source, tmp_path / "out.safetensors", dataset="raf-db")
    assert read_weights(out)[1]["arch"] == "poster-v1"


def test_project_named_pth_files_load_too(v1_model, arm_model, tmp_path: Path) -> None:
    for model in (v1_model, arm_model):
        path = tmp_path / f"{model.info.arch}.pth"
        torch.save(model.state_dict(), path)
        loaded = load_checkpoint(path, dataset="raf-db")
        assert loaded.info.arch == model.info.arch
        x = reference_input(torch.float32)
        with torch.inference_mode():
            assert torch.equal(loaded(x), model(x))


def test_missing_poster_v1_file_says_where_it_looked(monkeypatch, tmp_path: Path) -> None:
    from poster.weights import locate

    monkeypatch.setenv(locate.ENV_DIR, str(tmp_path))
    monkeypatch.delenv(locate.ENV_HUB_REPO, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match=r"no POSTER RAF-DB weights found: looked for poster-v1/rafdb_best.safetensors "
                                        r"or poster-v1/rafdb_best.pth.*python -m poster download poster-v1-raf-db"):
        load_checkpoint("poster-v1-raf-db")
