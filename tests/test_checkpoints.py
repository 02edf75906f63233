"""Checkpoint loading: released pickles, safety, corrupt files, the project's format, lookup."""
from __future__ import annotations

import builtins
import os
import pickle
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from poster import CheckpointError, load_checkpoint
from poster.weights.checkpoints import convert_checkpoint, read_weights, sha256_file
from poster.weights.safe_pickle import OpaqueObject, safe_torch_load
from poster.weights.deterministic import original_keys, write_checkpoint
from tests._reference import reference, reference_input
from tests._checkpoints import checkpoint_file, deterministic_state


# --- released files load as they are ----------------------------------------------------------

def test_released_checkpoint_loads_with_foreign_recorder(deterministic_checkpoint):
    raw = safe_torch_load(str(deterministic_checkpoint))
    assert isinstance(raw["recorder"], OpaqueObject)
    assert type(raw["recorder"]).__module__ == "__main__"
    np.testing.assert_array_equal(raw["recorder"].state["epoch_accuracy"], np.arange(6, dtype=np.float32).reshape(3, 2))
    assert raw["epoch"] == 1 and float(raw["best_acc"]) == 0.0


def test_info_from_registry(deterministic_model, deterministic_checkpoint):
    info = deterministic_model.info
    assert info.dataset == "raf-db" and info.published_accuracy == 92.21
    assert info.class_names == ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
    assert info.sha256 == sha256_file(deterministic_checkpoint) and len(info.sha256) == 64
    assert not deterministic_model.training


def test_dataset_argument_sets_class_order(deterministic_checkpoint, tmp_path):
    path = tmp_path / "my_run.pth"
    path.write_bytes(deterministic_checkpoint.read_bytes())
    assert load_checkpoint(path).info.class_names == tuple(f"class {i}" for i in range(7))
    info = load_checkpoint(path, dataset="caer-s").info
    assert info.class_names[3] == "Happy" and info.dataset == "caer-s"


@pytest.mark.slow  # saves and reloads a full POSTER++ checkpoint
def test_checkpoint_saved_on_gpu_loads_on_cpu(tmp_path, monkeypatch):
    state = {"module." + k: v for k, v in deterministic_state("poster-v2", 7).items()}
    import torch.serialization as serialization

    monkeypatch.setattr(serialization, "location_tag", lambda storage: "cuda:0")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "rafdb_best.pth")
    monkeypatch.undo()
    with zipfile.ZipFile(tmp_path / "rafdb_best.pth") as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        assert b"cuda:0" in zf.read(pkl)
    model = load_checkpoint(tmp_path / "rafdb_best.pth")
    with torch.inference_mode():
        logits = model(reference_input(torch.float32))
    np.testing.assert_allclose(logits.numpy(), reference()["logits_7cls"], atol=1e-3)


# --- key accounting ---------------------------------------------------------------------------

def _save_state(path: Path, state: dict) -> Path:
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    return path


def test_unexpected_key_is_named(tmp_path):
    state = deterministic_state("poster-v2", 7)
    state["VIT.extra_adapter.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"unexpected 1 keys \(VIT.extra_adapter.weight\)"):
        load_checkpoint(_save_state(tmp_path / "x.pth", state))


def test_missing_key_is_named(tmp_path):
    state = deterministic_state("poster-v2", 7)
    del state["attn2.proj.bias"]
    with pytest.raises(CheckpointError, match=r"missing 1 keys \(fusion.1.attn.proj.bias\)"):
        load_checkpoint(_save_state(tmp_path / "x.pth", state))


def test_wrong_shape_is_named(tmp_path):
    state = deterministic_state("poster-v2", 7)
    state["conv1.bias"] = torch.zeros(65)
    with pytest.raises(CheckpointError, match=r"wrong shape .*image_proj.0.bias"):
        load_checkpoint(_save_state(tmp_path / "x.pth", state))


def test_wrong_relative_position_index_is_refused(tmp_path):
    state = deterministic_state("poster-v2", 7)
    state["attn3.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    with pytest.raises(CheckpointError, match="relative-position index"):
        load_checkpoint(_save_state(tmp_path / "x.pth", state))


def test_class_count_must_match_dataset(tmp_path):
    path = _save_state(tmp_path / "x.pth", deterministic_state("poster-v2", 8))
    with pytest.raises(CheckpointError, match="8 classes but raf-db has 7"):
        load_checkpoint(path, dataset="raf-db")


# --- nothing from a file ever runs ------------------------------------------------------------

class _Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("make", [
    lambda marker: (os.system, (f"touch {marker}",)),
    lambda marker: (builtins.eval, (f"open({str(marker)!r}, 'w').close()",)),
    lambda marker: (builtins.exec, (f"open({str(marker)!r}, 'w').close()",)),
    lambda marker: (subprocess.Popen, (["touch", str(marker)],)),
], ids=["os.system", "eval", "exec", "subprocess.Popen"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, make):
    marker = tmp_path / "payload-ran"
    func, args = make(marker)
    state = {"module.VIT.head.linear.weight": torch.zeros(7, 768)}
    torch.save({"state_dict": state, "recorder": _Payload(func, *args)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused to load evil.pth: it asks to call .* could run code"):
        load_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()


def test_malicious_plain_pickle_is_refused(tmp_path):
    marker = tmp_path / "payload-ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Payload(os.system, f"touch {marker}"), protocol=2))
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_unknown_main_function_becomes_inert(tmp_path):
    # A __main__ global (unknown here) called through REDUCE only builds a placeholder.
    data = (b"\x80\x02c__main__\nlaunch\nq\x00X\x03\x00\x00\x00abcq\x01\x85q\x02Rq\x03.")
    (tmp_path / "x.pkl").write_bytes(data)
    with open(tmp_path / "x.pkl", "rb") as fh:
        from poster.weights.safe_pickle import RestrictedUnpickler

        obj = RestrictedUnpickler(fh).load()
    assert isinstance(obj, OpaqueObject) and obj.args == ("abc",)


# --- corrupt and foreign files: one clear line each --------------------------------------------

@pytest.fixture(scope="module")
def truncated(deterministic_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "rafdb_best.pth"
    data = deterministic_checkpoint.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not a readable PyTorch checkpoint"),
    (b"<!DOCTYPE html><html><body>Google Drive - Virus scan warning</body></html>", "HTML"),
    (random.Random(0).randbytes(4096), "not a readable PyTorch checkpoint"),  # seeded: noise that starts like "<" reads as HTML
    (pickle.dumps([1, 2, 3]), "not a readable PyTorch checkpoint"),
])
def test_bad_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_torch_file_without_state_dict(tmp_path):
    torch.save({"weights": [1, 2, 3]}, tmp_path / "model.pth")
    with pytest.raises(CheckpointError, match="holds no POSTER\\+\\+, POSTER or ARM state dict"):
        load_checkpoint(tmp_path / "model.pth")


def test_truncated_checkpoint(truncated):
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(truncated)
    assert "\n" not in str(info.value)


def test_zip_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "model.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint|truncated or corrupt"):
        load_checkpoint(path)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint file .*nope.pth"):
        load_checkpoint(tmp_path / "nope.pth")


# --- the project's format ---------------------------------------------------------------------

@pytest.mark.slow  # converts full POSTER++ checkpoints and reloads them
def test_convert_round_trip_gives_identical_logits(deterministic_checkpoint, deterministic_model, tmp_path):
    out = convert_checkpoint(deterministic_checkpoint, tmp_path / "rafdb.safetensors")
    converted = load_checkpoint(out)
    assert converted.info.class_names == deterministic_model.info.class_names
    assert converted.info.dataset == "raf-db" and converted.info.published_accuracy == 92.21
    _, meta = read_weights(out)
    assert meta["sha256"] == sha256_file(out)
    x = reference_input(torch.float32)
    with torch.inference_mode():
        assert torch.equal(converted(x), deterministic_model(x))


@pytest.mark.slow  # converts a full POSTER++ checkpoint
def test_convert_command(deterministic_checkpoint, tmp_path):
    out = tmp_path / "converted.safetensors"
    result = subprocess.run([sys.executable, "-m", "poster", "convert", str(deterministic_checkpoint), str(out),
                             "--dataset", "raf-db"], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr
    assert "raf-db, 7 classes: Surprise, Fear" in result.stdout
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["source_sha256"] == sha256_file(deterministic_checkpoint)
    assert meta["num_classes"] == "7" and meta["published_accuracy"] == "92.21"


def test_convert_needs_dataset_for_unknown_7_class_file(deterministic_checkpoint, tmp_path):
    src = tmp_path / "mine.pth"
    src.write_bytes(deterministic_checkpoint.read_bytes())
    with pytest.raises(CheckpointError, match="--dataset"):
        convert_checkpoint(src, tmp_path / "out.safetensors")


def test_foreign_safetensors_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a POSTER\\+\\+ checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")


def test_manifest_mismatch_is_detected(deterministic_checkpoint, tmp_path):
    path = tmp_path / "rafdb_best.pth"
    path.write_bytes(deterministic_checkpoint.read_bytes())
    (tmp_path / "manifest.json").write_text('{"files": {"rafdb_best.pth": {"sha256": "' + "0" * 64 + '"}}}')
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        load_checkpoint(path)


# --- finding files by name --------------------------------------------------------------------

def test_registry_name_found_in_env_folder(deterministic_checkpoint, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSTER_CHECKPOINT_DIR", str(deterministic_checkpoint.parent))
    assert load_checkpoint("raf-db").info.source == str(deterministic_checkpoint)
    assert load_checkpoint("RAF-DB").info.dataset == "raf-db"


def test_missing_registry_checkpoint_says_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSTER_CHECKPOINT_DIR", str(tmp_path / "weights"))
    monkeypatch.delenv("POSTER_HUB_REPO", raising=False)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint("affectnet-7")
    message = str(info.value)
    assert "affectnet7_best.safetensors or affectnet7_best.pth" in message
    assert str(tmp_path / "weights") in message and "python -m poster download affectnet-7" in message


def test_hub_without_network_fails_at_once(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSTER_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("POSTER_HUB_REPO", "poster-test/does-not-exist")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="poster-test/does-not-exist"):
        load_checkpoint("caer-s")


def test_deterministic_checkpoints_of_each_architecture_load_as_released(tmp_path):
    arm = load_checkpoint(checkpoint_file(tmp_path / "epoch59_acc0.9205.pth", "arm"))
    assert (arm.info.arch, arm.info.name, arm.info.dataset) == ("arm", "arm-raf-db", "raf-db")
    with pytest.raises(ValueError, match="poster-v1 was released with 7 classes only"):
        write_checkpoint(tmp_path / "v1.pth", "poster-v1", num_classes=8)
    with pytest.raises(KeyError, match="unknown architecture 'vit'"):
        write_checkpoint(tmp_path / "vit.pth", "vit")
    with pytest.raises(KeyError, match="no original key list for arm with 8 classes"):
        original_keys("arm", 8)
    heads = {n: s for n, s, _ in original_keys("poster-v2", 8) if n.startswith("VIT.head.")}
    assert heads == {"VIT.head.linear.weight": [8, 768], "VIT.head.linear.bias": [8]}

