"""Uploaded checkpoints belong to their session: allowance, memory cap, names, cleanup."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from demo.model import tab as model_tab
from demo.serving.store import ModelStore
from poster.errors import CheckpointError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")


def tiny_loader(path: str, device: str = "cpu") -> torch.nn.Module:
    """Stands in for the checkpoint loader: a file starting with b"bad" is refused, any other
    becomes a model whose tensors take four bytes per byte of the file."""
    data = Path(path).read_bytes()
    if data.startswith(b"bad"):
        raise CheckpointError(f"{Path(path).name} is not a POSTER++ checkpoint")
    return torch.nn.Linear(len(data), 1, bias=False)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    # Room for two 4000-byte models: a third upload from anyone evicts the least recently used.
    return ModelStore(device="cpu", loader=tiny_loader, upload_dir=tmp_path / "kept", checkpoint_dirs=[tmp_path],
                      uploads_per_session=2, upload_memory=9000)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def test_each_session_keeps_its_last_uploads(store, tmp_path):
    a = [store.add_upload(write(tmp_path, f"a{i}.pth", bytes([i]) * 100), owner="A") for i in range(3)]
    assert not store.owns("A", a[0]) and store.owns("A", a[1]) and store.owns("A", a[2])
    with pytest.raises(CheckpointError, match="no longer kept"):
        store.predictor(a[0])
    assert [c.label for c in store.choices(a) if c.origin == "uploaded"] == ["a1.pth (uploaded)", "a2.pth (uploaded)"]


def test_refused_uploads_take_no_slot(store, tmp_path):
    kept = store.add_upload(write(tmp_path, "good.pth", b"g" * 100), owner="A")
    for owner in ("B", "A"):
        for i in range(3):
            with pytest.raises(CheckpointError, match="not a POSTER"):
                store.add_upload(write(tmp_path, f"bad{i}.pth", b"bad" * 10), owner=owner)
    assert store.owns("A", kept) and store.predictor(kept) is not None
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [kept.split(":")[1]]


def test_the_memory_cap_evicts_the_least_recently_used_session_and_tells_only_it(store, tmp_path):
    a = store.add_upload(write(tmp_path, "a.pth", b"a" * 1000), owner="A")
    b = store.add_upload(write(tmp_path, "b.pth", b"b" * 1000), owner="B")
    store.predictor(a)  # A used theirs more recently than B
    c = store.add_upload(write(tmp_path, "c.pth", b"c" * 1000), owner="C")
    assert store.upload_memory_used() <= store.uploads.memory
    assert store.owns("A", a) and store.owns("C", c) and not store.owns("B", b)
    _, reason = store.try_predictor(b)
    assert "b.pth was removed to make room" in reason
    assert store.try_predictor(a)[0] is not None and store.try_predictor(c)[0] is not None
    with pytest.raises(CheckpointError, match="needs"):  # larger than all the room there is
        store.add_upload(write(tmp_path, "huge.pth", b"h" * 3000), owner="D")


def test_identical_files_keep_each_visitors_name(store, tmp_path):
    data = b"same bytes" * 50
    a = store.add_upload(write(tmp_path, "alpha.pth", data), owner="A")
    b = store.add_upload(write(tmp_path, "beta.pth", data), owner="B")
    assert a != b
    assert store.label(a) == "alpha.pth (uploaded)" and store.label(b) == "beta.pth (uploaded)"
    assert [c.label for c in store.choices([b]) if c.origin == "uploaded"] == ["beta.pth (uploaded)"]


def test_a_session_that_ends_takes_its_uploads_along(store, tmp_path):
    a = store.add_upload(write(tmp_path, "a.pth", b"a" * 100), owner="A")
    b = store.add_upload(write(tmp_path, "b.pth", b"b" * 100), owner="B")
    assert store.forget_session("A") == 1 and not store.owns("A", a) and store.owns("B", b)
    assert store.forget_uploads([b]) == 1 and not any((tmp_path / "kept").iterdir())


def test_closing_deletes_every_upload_and_only_a_folder_the_shelf_made(store, tmp_path):
    a = store.add_upload(write(tmp_path, "a.pth", b"a" * 100), owner="A")
    b = store.add_upload(write(tmp_path, "b.pth", b"b" * 100), owner="B")
    assert store.forget_all_uploads() == 2 and not store.owns("A", a) and not store.owns("B", b)
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())  # the caller's folder stays

    own = ModelStore(device="cpu", loader=tiny_loader, checkpoint_dirs=[tmp_path])
    c = own.add_upload(write(tmp_path, "c.pth", b"c" * 100), owner="C")
    made = own.uploads.folder()
    assert made.name.startswith("poster-uploads-") and any(made.iterdir())
    assert own.forget_all_uploads() == 1 and not made.exists() and not own.owns("C", c)
    again = own.add_upload(write(tmp_path, "d.pth", b"d" * 100), owner="C")  # the shelf still works after
    assert own.owns("C", again) and own.forget_all_uploads() == 1


def test_nobody_switches_to_another_visitors_upload(store, tmp_path):
    a = store.add_upload(write(tmp_path, "a.pth", b"a" * 100), owner="A")
    view = model_tab.switch_checkpoint(a, None, store=store, uploads=[])
    assert view.model_key is None and "not a checkpoint you can choose" in view.switch_status
    view = model_tab.switch_checkpoint("x" * 10**6, None, store=store, uploads=[])
    assert view.model_key is None and len(view.switch_status) < 300


def test_the_upload_handler_keeps_the_visitors_list_current(store, tmp_path):
    uploads: list[str] = []
    for i in range(3):
        view = model_tab.upload_checkpoint(str(write(tmp_path, f"w{i}.pth", bytes([i + 1]) * 100)), None, uploads,
                                           store=store, owner="A")
        uploads = view.uploads
        assert "safely" in view.upload_status
    assert len(uploads) == 2 and uploads[-1] == view.model_key
    refused = model_tab.upload_checkpoint(str(write(tmp_path, "bad.pth", b"bad!")), view.model_key, uploads,
                                          store=store, owner="A")
    assert refused.uploads == uploads and refused.model_key == view.model_key and "refused" in refused.upload_status
