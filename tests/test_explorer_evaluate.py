"""Evaluating an uploaded .zip in the app: same predictions as the command line, progress, cancel,
private session runs, one-line errors, and the /evaluate API driven with gradio_client."""
from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from data_explorer.archive import ArchiveCaps
from demo.explorer import evaluate_upload
from demo.explorer import runs as explorer_runs
from demo.explorer.evaluate_upload import evaluate_archive, remove_session_dir, storage_note
from demo.explorer.panels import progress_html
from demo.explorer.tab import open_run
from poster.cli import main
from poster.data import sample_faces as _data
from tests._app import RAF_FOLDERS, RUN_LABELS, app_store, architectures_dir, checkpoint_dir, served  # noqa: F401


@pytest.fixture
def uploads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Gradio's upload folder for the test (the handler accepts only archives inside it)."""
    folder = tmp_path / "gradio-uploads"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    monkeypatch.delenv("POSTER_RUNS_DIR", raising=False)
    return folder


def labeled_set(folder: Path, *, extras: bool = True) -> Path:
    """RAF-DB class folders of real face crops; with ``extras`` an unknown class folder and an
    image over a small pixel cap."""
    _data.write_imagefolder(folder, RUN_LABELS, RAF_FOLDERS)
    if extras:
        _data.save_jpeg(_data.face(3), folder / "test" / "9" / "stray.jpg")
        _data.save_jpeg(_data.face(4).resize((400, 400)), folder / "test" / "1" / "huge.jpg")
    return folder


def zipped(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return archive


CAPS = ArchiveCaps(max_pixels=50_000)


def run_to_end(*args, **kwargs) -> tuple[list[dict], str | None]:
    steps = list(evaluate_archive(*args, **kwargs))
    return [step.summary for step in steps], steps[-1].session_dir


@pytest.mark.slow  # a whole evaluation in the app and on the command line
def test_in_app_evaluation_gives_the_command_lines_predictions(tmp_path, uploads, app_store, checkpoint_dir):  # noqa: F811
    archive = zipped(labeled_set(tmp_path / "set"), uploads / "my faces.zip")
    payloads, session = run_to_end(str(archive), "raf-db", None, None, store=app_store, caps=CAPS, batch_size=4)

    assert payloads[0]["status"] == "unpacking"
    running = [p for p in payloads if p["status"] == "running"]
    assert [p["done"] for p in running] == [4, 8, 12, 16] and {p["total"] for p in running} == {16}
    assert all(p["images_per_second"] > 0 for p in running) and running[-1]["seconds_left"] == 0
    assert "16 of 16 images" in progress_html(running[-1]) and "images/s" in progress_html(running[-1])

    summary = payloads[-1]
    assert summary["status"] == "done" and summary["storage"] == "session" and summary["num_images"] == 16
    fast = evaluate_upload.fast_dtype(app_store)  # bfloat16 on a CPU that runs it natively, else float32
    assert summary["dtype"] == fast and summary["dataset"] == "my faces.zip" and summary["dataset_root"] is None
    reasons = {s["file"]: s["reason"] for s in summary["skipped"]}
    assert "unknown class folder '9'" in reasons["test/9"]
    assert "400x400" in reasons["test/1/huge.jpg"]
    low, high = summary["accuracy_ci"]
    assert low <= summary["accuracy"] <= high
    assert [c["class"] for c in summary["per_class"]] == list(summary["class_names"])
    assert sum(c["n"] for c in summary["per_class"]) == 16
    assert set(summary["label_order"]) == {"suspected", "mapping", "accuracy_if_remapped"}

    # The run is in the session's folder, with thumbnails, and opens in the explorer for this session only.
    name = summary["run"]
    assert name.startswith(explorer_runs.SESSION_PREFIX)
    run = explorer_runs.get_run(name, None, session)
    assert run is not None and len(list((run.path / "thumbs").rglob("*.jpg"))) == 16
    assert explorer_runs.get_run(name, None, None) is None
    assert explorer_runs.get_run(explorer_runs.SESSION_PREFIX + "../" + run.path.name, None, session) is None
    assert "95 % CI" in open_run(name, None, session).summary

    # The command line in the fast mode on the same images gives the same predictions.
    cli_data = labeled_set(tmp_path / "cli-set", extras=False)
    out = tmp_path / "cli-run"
    assert main(["evaluate", "--checkpoint", str(checkpoint_dir / "rafdb_best.pth"), "--data", str(cli_data),
                 "--out", str(out), "--dtype", fast, "--batch-size", "4"]) == 0
    cli = pd.read_parquet(out / "predictions.parquet").set_index("path")
    app = run.predictions.set_index("path").loc[cli.index]
    assert (app["pred"] == cli["pred"]).all() and (app["label"] == cli["label"]).all()
    probs = [c for c in cli.columns if c.startswith("prob_")]
    np.testing.assert_allclose(app[probs].to_numpy(), cli[probs].to_numpy(), atol=1e-6)

    remove_session_dir(session)
    assert not Path(session).exists()


@pytest.mark.slow  # a whole evaluation in the app and on the command line
def test_poster_v1_is_evaluated_in_bgr_as_on_the_command_line(tmp_path, uploads, architectures_dir):  # noqa: F811
    from demo.serving.store import ModelStore

    store = ModelStore(device="cpu", checkpoint_dirs=[architectures_dir])
    archive = zipped(labeled_set(tmp_path / "set", extras=False), uploads / "faces.zip")
    payloads, session = run_to_end(str(archive), "poster-v1-raf-db", None, None, store=store, caps=CAPS, batch_size=8)
    summary = payloads[-1]
    assert summary["status"] == "done" and summary["checkpoint_arch"] == "poster-v1" and summary["colour_order"] == "BGR"
    run = explorer_runs.get_run(summary["run"], None, session)

    out = tmp_path / "cli-run"
    assert main(["evaluate", "--checkpoint", str(architectures_dir / "poster-v1" / "rafdb_best.pth"), "--arch",
                 "poster-v1", "--data", str(tmp_path / "set"), "--out", str(out),
                 "--dtype", evaluate_upload.fast_dtype(store), "--batch-size", "8"]) == 0  # the app's precision
    cli = pd.read_parquet(out / "predictions.parquet").set_index("path")
    app = run.predictions.set_index("path").loc[cli.index]
    probs = [c for c in cli.columns if c.startswith("prob_")]
    np.testing.assert_allclose(app[probs].to_numpy(), cli[probs].to_numpy(), atol=1e-6)
    remove_session_dir(session)


def test_cancelling_leaves_no_run_and_no_unpacked_files(tmp_path, uploads, app_store):  # noqa: F811
    archive = zipped(labeled_set(tmp_path / "set", extras=False), uploads / "set.zip")
    before = set(Path(tempfile.gettempdir()).glob("poster-eval-set-*"))
    steps = evaluate_archive(str(archive), "raf-db", None, None, store=app_store, batch_size=4)
    for step in steps:
        session = step.session_dir
        if step.summary["status"] == "running":
            break
    steps.close()  # what Gradio does when the visitor presses Cancel
    assert list(Path(session).iterdir()) == []
    assert set(Path(tempfile.gettempdir()).glob("poster-eval-set-*")) == before
    remove_session_dir(session)


def test_a_limit_and_the_shared_runs_folder(tmp_path, uploads, app_store, monkeypatch):  # noqa: F811
    archive = zipped(labeled_set(tmp_path / "set", extras=False), uploads / "set.zip")
    assert "private to this browser session" in storage_note()
    shared = tmp_path / "shared-runs"
    monkeypatch.setenv("POSTER_RUNS_DIR", str(shared))
    assert "every visitor" in storage_note()
    payloads, session = run_to_end(str(archive), "POSTER++ · RAF-DB", 5, None, store=app_store, batch_size=8)
    summary = payloads[-1]
    assert summary["storage"] == "shared" and summary["num_images"] == 5 and session is None
    assert (shared / summary["run"] / "run.json").is_file()
    assert summary["run"] in explorer_runs.run_choices(shared)[0]["choices"]


@pytest.mark.parametrize("case, words", [
    ("outside", "did not arrive through the upload"),
    ("not-zip", "is not a .zip archive"),
    ("checkpoint", "unknown checkpoint 'affectnet-9'"),
    ("traversal", "climbs out of its folder"),
    ("none", "upload a .zip"),
    ("limit", "at least 1"),
])
def test_bad_requests_get_one_line(tmp_path, uploads, app_store, case, words):  # noqa: F811
    good = zipped(labeled_set(tmp_path / "set", extras=False), uploads / "set.zip")
    archive, checkpoint, limit = str(good), "raf-db", None
    if case == "outside":
        archive = str(zipped(tmp_path / "set", tmp_path / "elsewhere.zip"))
    elif case == "not-zip":
        archive = str(uploads / "set.txt")
        Path(archive).write_text("path,label\n")
    elif case == "checkpoint":
        checkpoint = "affectnet-9"
    elif case == "traversal":
        with zipfile.ZipFile(uploads / "evil.zip", "w") as zf:
            zf.writestr("../../evil.jpg", b"x")
        archive = str(uploads / "evil.zip")
    elif case == "none":
        archive = None
    elif case == "limit":
        limit = -3
    with pytest.raises(gr.Error) as info:
        list(evaluate_archive(archive, checkpoint, limit, None, store=app_store))
    assert words in info.value.message.lower() or words in info.value.message
    assert "\n" not in info.value.message
    assert not (tmp_path / "evil.jpg").exists() and not (uploads.parent / "evil.jpg").exists()


def test_session_folders_are_removed_only_inside_their_base(tmp_path):
    elsewhere = tmp_path / "keep-me"
    elsewhere.mkdir()
    remove_session_dir(str(elsewhere))
    remove_session_dir(None)
    assert elsewhere.is_dir()
    mine = evaluate_upload.new_session_dir()
    (Path(mine) / "run").mkdir()
    remove_session_dir(mine)
    assert not Path(mine).exists()


def test_session_runs_go_when_the_app_exits(monkeypatch, tmp_path):
    from demo.serving import files

    monkeypatch.setattr(files, "_temporary", [])
    monkeypatch.setattr(evaluate_upload, "_SESSION_BASE", tmp_path / "session-runs")
    mine = Path(evaluate_upload.new_session_dir())
    assert mine.parent == tmp_path / "session-runs"
    files.remove_temporary_files()
    assert not (tmp_path / "session-runs").exists()


# --- the API, against the launched app ------------------------------------------------------------

def test_the_evaluate_api_returns_the_run_summary(tmp_path, app_store, monkeypatch):  # noqa: F811
    monkeypatch.delenv("POSTER_RUNS_DIR", raising=False)
    archive = zipped(labeled_set(tmp_path / "set"), tmp_path / "api-set.zip")
    with served(app_store, runs_root=None) as url:
        client = Client(url, verbose=False)
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert [p["parameter_name"] for p in endpoints["/evaluate"]["parameters"]][:2] == ["archive", "checkpoint"]
        summary = client.predict(handle_file(str(archive)), "raf-db", None, api_name="/evaluate")
        assert summary["status"] == "done" and summary["num_images"] == 17  # the 400 px image is under the default cap
        assert summary["checkpoint"] == "raf-db" and len(summary["per_class"]) == 7
        assert any(s["file"] == "test/9" for s in summary["skipped"])
        assert 0 <= summary["accuracy_ci"][0] <= summary["accuracy"] <= summary["accuracy_ci"][1] <= 100
        bad = tmp_path / "bad.zip"
        bad.write_bytes(b"not a zip")
        with pytest.raises(AppError) as info:
            client.predict(handle_file(str(bad)), "raf-db", None, api_name="/evaluate")
        assert "Not a readable .zip archive" in str(info.value) and "Traceback" not in str(info.value)


def test_progress_lines_for_each_stage():
    assert "Checking and unpacking faces.zip" in progress_html({"status": "unpacking", "archive": "faces.zip"})
    running = progress_html({"status": "running", "done": 64, "total": 300, "images_per_second": 21.3,
                             "seconds_left": 11.1})
    assert '<progress value="64" max="300"' in running and "64 of 300 images · 21.3 images/s, about 11 s left" in running
    assert "Cancelled" in progress_html({"status": "cancelled"})
    assert progress_html(None) == ""
