"""Which dataset (class order) a checkpoint has: given, recorded, told by its name, its class count
or the data it is evaluated on; every command says which, and asks for --dataset where nothing tells."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from poster import load_checkpoint
from poster import cli
from poster.cli import evaluate as evaluate_module
from poster.weights.checkpoints import read_weights
from poster.errors import DatasetError
from poster.evaluation.protocol import infer_dataset
from poster.models.poster_v2 import PosterV2Weights
from poster.data.sample_faces import face, write_imagefolder
from tests._data import write_csv, write_rafdb
from poster.weights.registry import ARCHITECTURES
from tests._checkpoints import checkpoint_file

RAF = PosterV2Weights.RAF_DB.value
AFFECTNET_7 = PosterV2Weights.AFFECTNET_7.value
CAER_S = PosterV2Weights.CAER_S.value
pytestmark = pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")


@pytest.fixture(scope="module")
def unnamed_7(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 7-class released-style file under a name of its own: nothing in it tells its dataset."""
    return checkpoint_file(tmp_path_factory.mktemp("weights") / "my_run.pth", num_classes=7)


@pytest.fixture(scope="module")
def unnamed_8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checkpoint_file(tmp_path_factory.mktemp("weights8") / "my_run8.pth", num_classes=8)


@pytest.fixture(scope="module")
def unknown_model(unnamed_7: Path) -> torch.nn.Module:
    return load_checkpoint(unnamed_7)


# --- what the file tells ---------------------------------------------------------------------

def test_unknown_dataset_gives_generic_names_and_says_why(unknown_model: torch.nn.Module) -> None:
    info = unknown_model.info
    assert info.dataset is None and not info.classes_known
    assert info.class_names == tuple(f"class {i}" for i in range(7))
    assert "--dataset" in info.dataset_reason and "raf-db, affectnet-7" in info.dataset_reason


def test_eight_classes_are_affectnet_8_and_it_is_said(unnamed_8: Path) -> None:
    _, meta = read_weights(unnamed_8)
    assert meta["dataset"] == "affectnet-8" and meta["class_names"][-1] == "Contempt"
    assert meta["dataset_reason"] == "inferred from the class count: 8 classes, and only AffectNet-8 has 8"


def test_released_file_name_is_reported(tmp_path: Path, unnamed_7: Path) -> None:
    path = tmp_path / AFFECTNET_7.file_name
    path.write_bytes(unnamed_7.read_bytes())
    _, meta = read_weights(path)
    assert meta["dataset"] == "affectnet-7"
    assert meta["dataset_reason"] == "inferred from the file name: affectnet7_best.pth is the released AffectNet-7 file"


def test_given_dataset_wins_and_unknown_names_are_refused(unnamed_8: Path, unnamed_7: Path) -> None:
    _, meta = read_weights(unnamed_7, dataset="CAER-S")
    assert (meta["dataset"], meta["dataset_reason"], meta["class_names"][3]) == ("caer-s", "given", "Happy")
    with pytest.raises(Exception, match="unknown dataset 'fer2013'.*--dataset"):
        read_weights(unnamed_7, dataset="fer2013")
    with pytest.raises(Exception, match="8 classes but raf-db has 7"):
        read_weights(unnamed_8, dataset="raf-db")


# --- what the evaluated data tells -------------------------------------------------------------

def test_rafdb_folders_label_file_affectnet_and_caer_folders(tmp_path: Path) -> None:
    write_imagefolder(tmp_path / "raf", [0, 6], RAF.folder_names)
    write_imagefolder(tmp_path / "aff", [0, 6], AFFECTNET_7.folder_names)
    write_imagefolder(tmp_path / "caer", [0, 3], CAER_S.folder_names)
    write_rafdb(tmp_path / "release", test_labels=[1, 2])
    assert infer_dataset(tmp_path / "raf", 7) == ("raf-db", "inferred from the data: class folders 1, 7 are RAF-DB's")
    assert infer_dataset(tmp_path / "aff", 7)[0] == "affectnet-7"
    key, reason = infer_dataset(tmp_path / "caer", 7)
    assert key == "caer-s" and "Anger, Happy" in reason
    key, reason = infer_dataset(tmp_path / "release", 7)
    assert key == "raf-db" and "EmoLabel/list_patition_label.txt" in reason


def test_ambiguous_data_names_dataset_flag_and_choices(tmp_path: Path) -> None:
    write_imagefolder(tmp_path / "both", [1, 2, 3], RAF.folder_names)  # folders 2, 3, 4: RAF-DB's and AffectNet's
    with pytest.raises(DatasetError, match=r"fit RAF-DB and AffectNet-7: pass --dataset NAME \(raf-db, affectnet-7\)"):
        infer_dataset(tmp_path / "both", 7)
    csv_path = write_csv(tmp_path / "c" / "labels.csv", [("a.jpg", "Happiness")])
    with pytest.raises(DatasetError, match=r"csv file does not tell it: pass --dataset NAME \(raf-db, affectnet-7, caer-s\)"):
        infer_dataset(csv_path, 7)
    write_imagefolder(tmp_path / "odd", [0], ("cats",))
    with pytest.raises(DatasetError, match="match none with 7 classes: pass --dataset"):
        infer_dataset(tmp_path / "odd", 7)


@pytest.fixture
def cached_unknown(monkeypatch: pytest.MonkeyPatch, unknown_model: torch.nn.Module) -> torch.nn.Module:
    """The command reuses the module's model (dataset unknown) instead of loading the file again."""
    def load(*args, dataset=None, **kwargs):
        if dataset is not None:
            from poster.weights.checkpoints import with_dataset
            unknown_model.info = with_dataset(original, dataset, "given")
        else:
            unknown_model.info = original
        return unknown_model
    original = unknown_model.info
    monkeypatch.setattr(evaluate_module, "load_checkpoint", load)
    yield unknown_model
    unknown_model.info = original


def test_evaluate_infers_rafdb_from_folders_and_records_why(tmp_path: Path, cached_unknown, capsys) -> None:
    write_imagefolder(tmp_path / "data", [0, 3, 6], RAF.folder_names)
    out = tmp_path / "run"
    assert cli.main(["evaluate", "--checkpoint", "x", "--data", str(tmp_path / "data"), "--out", str(out)]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["checkpoint_dataset"] == "raf-db" and info["class_names"] == list(RAF.class_names)
    assert info["checkpoint_dataset_reason"] == "inferred from the data: class folders 1, 4, 7 are RAF-DB's"
    assert info["num_images"] == 3 and info["num_skipped"] == 0
    assert "raf-db class order (inferred from the data: class folders 1, 4, 7" in capsys.readouterr().err


def test_evaluate_on_ambiguous_data_fails_in_one_line(tmp_path: Path, cached_unknown, capsys) -> None:
    write_imagefolder(tmp_path / "data", [1, 2], RAF.folder_names)
    assert cli.main(["evaluate", "--checkpoint", "x", "--data", str(tmp_path / "data"),
                     "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: class folders 2, 3 fit RAF-DB and AffectNet-7: pass --dataset NAME (raf-db, affectnet-7)"]
    assert not (tmp_path / "run").exists()


def test_evaluate_with_dataset_flag_uses_it(tmp_path: Path, cached_unknown) -> None:
    write_imagefolder(tmp_path / "data", [1, 2], AFFECTNET_7.folder_names)
    out = tmp_path / "run"
    assert cli.main(["evaluate", "--checkpoint", "x", "--data", str(tmp_path / "data"), "--out", str(out),
                     "--dataset", "affectnet-7"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert (info["checkpoint_dataset"], info["checkpoint_dataset_reason"]) == ("affectnet-7", "given")
    assert info["class_names"] == list(AFFECTNET_7.class_names)


# --- predict and convert -----------------------------------------------------------------------

def test_predict_without_dataset_says_names_are_generic(unnamed_7: Path, tmp_path: Path, capsys) -> None:
    image = tmp_path / "face.jpg"
    face(0).resize((224, 224)).save(image)
    assert cli.main(["predict", str(image), "--checkpoint", str(unnamed_7), "--json", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["dataset"] is None and doc["classes"][0] == "class 0" and "--dataset" in doc["dataset_reason"]
    assert "classes shown as 'class 0'..'class 6'" in captured.err and "--dataset NAME" in captured.err


def test_convert_reports_what_it_inferred(unnamed_8: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "a8.safetensors"
    assert cli.main(["convert", str(unnamed_8), str(out)]) == 0
    captured = capsys.readouterr()
    assert "dataset affectnet-8 (inferred from the class count: 8 classes" in captured.err
    _, meta = read_weights(out)
    assert (meta["dataset"], meta["dataset_reason"]) == ("affectnet-8", "recorded in the file")
    model = load_checkpoint(out)
    assert replace(model.info, sha256="").class_names[-1] == "Contempt"


def test_train_init_reports_the_init_dataset(unnamed_7: Path, tmp_path: Path) -> None:
    from poster.training.recipe import TrainConfig
    from poster.training.initial_weights import build_model

    said: list[str] = []
    config = TrainConfig.from_recipe("raf-db", tmp_path, tmp_path / "run", init=str(unnamed_7),
                                     init_dataset="caer-s")
    build_model(config, RAF.class_names, said.append)
    assert said == [f"initialised from {unnamed_7} (caer-s; caer-s given); head rows reordered to the new class order"]
    said.clear()
    config = TrainConfig.from_recipe("raf-db", tmp_path, tmp_path / "run", init=str(unnamed_7))
    build_model(config, RAF.class_names, said.append)
    assert "dataset not known: my_run.pth does not record it; pass --init-dataset NAME" in said[0]
    assert said[0].endswith("head kept (the checkpoint names no classes; assumed to be in the same order)")
    parser = cli.build_parser(["train"])
    args = parser.parse_args(["train", "--data", "d", "--dataset", "raf-db", "--init", "x.pth", "--init-dataset", "caer-s"])
    assert args.init_dataset == "caer-s"


def test_model_card_facts_live_in_the_registry() -> None:
    from poster.weights.checkpoints import count_parameters
    from poster.weights.registry import create_model

    for arch, spec in ARCHITECTURES.items():
        assert count_parameters(create_model(arch, 7)) == spec.facts["parameters_used"], arch
    assert "batch" in ARCHITECTURES["arm"].facts["batch_caveat"]
    assert ARCHITECTURES["poster-v1"].facts["colour_order"] == "BGR"
