"""A checkpoint file cannot make the loader allocate much more than its own size, and no model is
built before the file's shapes and class count fit the architecture."""
from __future__ import annotations

import io
import pickle
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import torch

from poster import CheckpointError, load_checkpoint
from poster.weights import checkpoints
from tests._checkpoints import deterministic_state


class _Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.fixture
def built(monkeypatch):
    """Models the loader gives memory: built off the meta device, or a meta skeleton materialized."""
    made: list[str] = []
    real_create, real_build = checkpoints.create_model, checkpoints.build_with_state

    def creating(arch: str, num_classes: int = 7, **kwargs):
        if torch.empty(0).device.type != "meta":
            made.append(arch)
        return real_create(arch, num_classes, **kwargs)

    def materializing(build, state, dtype=torch.float32):
        made.append("a meta-device model given memory")  # before the weights are copied, which may fail
        return real_build(build, state, dtype)

    monkeypatch.setattr(checkpoints, "create_model", creating)
    monkeypatch.setattr(checkpoints, "build_with_state", materializing)
    return made


def test_the_recorder_sees_the_model_a_good_file_builds(tmp_path: Path, built):
    torch.save({"model_state_dict": deterministic_state("arm", 7)}, tmp_path / "arm.pth")
    load_checkpoint(tmp_path / "arm.pth")
    assert built == ["a meta-device model given memory"]


def test_bytearray_of_a_tiny_file_is_refused_before_it_is_allocated(tmp_path: Path):
    path = tmp_path / "tiny.pth"
    path.write_bytes(pickle.dumps(_Call(bytearray, 2**28), protocol=2))
    assert path.stat().st_size < 64
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"refused to load tiny.pth: bytearray\(268435456\) asks for 256.0 MB"):
            load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_numpy_array_larger_than_the_file_is_refused(tmp_path: Path):
    import numpy as np

    path = tmp_path / "array.pth"
    path.write_bytes(pickle.dumps(_Call(np.ndarray, (2**27,), "f8"), protocol=2))
    with pytest.raises(CheckpointError, match=r"an array of shape \(134217728,\) asks for 1,024.0 MB"):
        load_checkpoint(path)


def test_stride_zero_head_of_a_million_classes_is_refused_before_any_model(tmp_path: Path, built):
    state = deterministic_state("arm", 7)
    features = state["fc.weight"].shape[1]
    state["fc.weight"] = torch.zeros(1).expand(1_000_000, features)  # one float in the file
    state["fc.bias"] = torch.zeros(1).expand(1_000_000)
    path = tmp_path / "arm.pth"
    torch.save({"model_state_dict": state}, path)
    assert path.stat().st_size * 4 < 1_000_000 * features * 4  # the head alone: four times the file
    with pytest.raises(CheckpointError, match=r"refused to load arm.pth: a tensor of shape \(1000000, 121\)"):
        load_checkpoint(path)
    assert built == []


def test_head_beyond_the_class_limit_is_refused_before_any_model(tmp_path: Path, built):
    state = deterministic_state("arm", 7)
    state["fc.weight"] = torch.zeros(2000, state["fc.weight"].shape[1])
    state["fc.bias"] = torch.zeros(2000)
    torch.save({"model_state_dict": state}, tmp_path / "arm.pth")
    with pytest.raises(CheckpointError, match="a head of 2,000 classes; a facial-expression network has 2 to 1000"):
        load_checkpoint(tmp_path / "arm.pth")
    assert built == []


def test_shapes_are_checked_before_the_model_is_built(tmp_path: Path, built):
    state = deterministic_state("arm", 7)
    state["fc.bias"] = torch.zeros(9)
    torch.save({"model_state_dict": state}, tmp_path / "arm.pth")
    with pytest.raises(CheckpointError, match="does not fit ARM: wrong shape"):
        load_checkpoint(tmp_path / "arm.pth")
    assert built == []


def test_legacy_storage_larger_than_the_file_is_refused(tmp_path: Path):
    buffer = io.BytesIO()
    torch.save({"x": torch.zeros(1000)}, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    # The storage's element count (BININT2 1000) becomes 2**28 (BININT): 1 GB of float32.
    path = tmp_path / "legacy.pth"
    path.write_bytes(data.replace(b"M\xe8\x03", b"J\x00\x00\x00\x10", 1))
    with pytest.raises(CheckpointError, match="refused to load legacy.pth: a tensor storage asks for 1,024.0 MB"):
        load_checkpoint(path)


def test_zip_member_that_unpacks_beyond_the_file_is_refused(tmp_path: Path):
    path = tmp_path / "bomb.pth"
    torch.save({"x": torch.zeros(4)}, path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/data/99", bytes(64 * 2**20))
    assert path.stat().st_size < 2**20
    with pytest.raises(CheckpointError, match="its zip members unpack to 64.0 MB"):
        load_checkpoint(path)


def test_released_files_stay_within_the_budget(tmp_path: Path):
    from tests._checkpoints import checkpoint_file

    for arch in ("arm", "poster-v1"):
        model = load_checkpoint(checkpoint_file(tmp_path / f"{arch}.pth", arch))
        assert model.info.arch == arch and model.info.num_classes == 7
