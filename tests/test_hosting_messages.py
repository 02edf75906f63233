"""What a visitor is told, attacked over raw HTTP on loopback: bombs in an evaluated set are skipped
with their reason, no server path in a message, log records stay short, every handler answers with
a sentence, and every Python example of the README runs against the live server."""
from __future__ import annotations

import io
import logging
import os
import re
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.serving.hosting import ShortLogRecords
from poster.data import sample_faces as _data
from tests._app import RAF_FOLDERS, app_store, astronaut_path, checkpoint_dir, served, write_run  # noqa: F401
from tests._http import Visitor, error_of, event_named, file_meta
from tests._video_clips import ASTRONAUT_FACE, face_patch, scene, write_clip

# Attacks on a served app over HTTP: the full suite runs them, the fast subset leaves them out.
pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
LOG_LIMIT = 4000


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """A runs folder with one good run and one whose run.json is broken."""
    root = tmp_path_factory.mktemp("runs")
    write_run(root)
    broken = root / "broken-run"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    (broken / "predictions.parquet").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def server(app_store, runs_root):  # noqa: F811
    with served(app_store, runs_root) as url:
        yield url


@pytest.fixture
def visitor(server):
    v = Visitor(server)
    yield v
    v.close()


@pytest.fixture
def log_lines():
    """Every record the server logs, formatted as app.py's handlers format them (with its filter)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    handler.addFilter(ShortLogRecords(LOG_LIMIT))
    root = logging.getLogger()
    root.addHandler(handler)
    yield lines
    root.removeHandler(handler)


SET_LABELS = [0, 3, 5, 6]  # four faces: enough for a run, quick to evaluate


def labeled_zip(entries: dict[str, bytes] | None = None, folder: Path | None = None) -> bytes:
    """A RAF-DB folder set of four real faces (when ``folder`` is given) plus ``entries``, zipped."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        if folder is not None:
            _data.write_imagefolder(folder, SET_LABELS, RAF_FOLDERS)
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(folder).as_posix())
        for name, data in (entries or {}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A small PNG whose header says ``width`` x ``height`` (a valid checksum: Pillow opens it)."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4: ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17: ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr: ihdr + 17])))
    return bytes(data)


def evaluate(visitor: Visitor, server: str, archive: bytes, name: str = "set.zip") -> dict:
    path = visitor.uploaded(name, archive, "application/zip")
    return visitor.run(event_named(server, "evaluate"), [file_meta(path, name), "raf-db", None, None, None],
                       timeout=300)


def is_sentence(text: str | None) -> bool:
    return bool(text) and "\n" not in text and len(text) <= 600 and text[0].isupper()


# --- 5. a decompression bomb inside an evaluated set is skipped with its reason --------------------

def test_a_bomb_image_in_an_evaluated_zip_is_skipped_with_its_reason(server, visitor, tmp_path):
    archive = labeled_zip({"test/1/bomb.png": bomb_png()}, tmp_path / "set")
    message = evaluate(visitor, server, archive)
    assert message["success"], error_of(message)
    summary = message["output"]["data"][0]
    assert summary["status"] == "done" and summary["num_images"] == len(SET_LABELS)
    reasons = {s["file"]: s["reason"] for s in summary["skipped"]}
    assert "decompression bomb" in reasons["test/1/bomb.png"]


# --- 6. no server path in a message -------------------------------------------------------------

def test_a_set_of_unknown_layout_is_named_by_its_archive(server, visitor):
    image = (astronaut_path()).read_bytes()
    message = evaluate(visitor, server, labeled_zip({"a.png": image, "b.png": image}), "faces.zip")
    error = error_of(message)
    assert "cannot tell the layout of faces.zip" in error.lower(), error
    assert "/tmp" not in error and "poster-eval-set" not in error and os.sep + "set" not in error


def test_a_broken_run_is_named_without_the_server_path(server, visitor, runs_root):
    message = visitor.run(event_named(server, "run_pickers_on_load"), [])
    notices = " ".join(str(v) for v in message["output"]["data"])
    assert "Skipped a broken run: broken-run" in notices
    assert str(runs_root) not in notices and str(runs_root.resolve()) not in notices
    assert "broken-run/run.json" in notices or "run.json" in notices


# --- 7. log records stay short ------------------------------------------------------------------

def test_a_60000_character_entry_name_gives_a_sentence_and_short_logs(server, visitor, tmp_path, log_lines):
    long_name = "test/1/" + "a" * 60_000 + ".jpg"
    message = evaluate(visitor, server, labeled_zip({long_name: b"x"}, tmp_path / "set"))
    error = error_of(message)
    assert is_sentence(error) and "longer than 255 bytes" in error, error
    assert all(len(line) <= LOG_LIMIT + 200 for line in log_lines), max(map(len, log_lines))


def test_a_logged_traceback_is_capped_too():
    record = logging.LogRecord("demo", logging.ERROR, __file__, 1, "failed", None, None)
    try:
        raise OSError("x" * 60_000)
    except OSError:
        import sys

        record.exc_info = sys.exc_info()
    ShortLogRecords(LOG_LIMIT).filter(record)
    text = logging.Formatter().format(record)
    assert len(text) <= LOG_LIMIT + 100 and "OSError" in text and "more characters" in text


# --- 8. every handler answers with a sentence ---------------------------------------------------

@pytest.mark.parametrize("index", [None, 5, {}, "x", [1], [True, 2.5]])
@pytest.mark.parametrize("event_name", ["_on_cell", "_on_cell_1"])  # the compare table's, the confusion matrix's
def test_table_clicks_with_bad_indices_get_a_sentence(server, visitor, event_name, index):
    from demo.explorer.views import DEFAULT_SORT

    run = "raf-db-test"
    listed = visitor.run(event_named(server, "run_pickers_on_load"), [])  # the page's dropdowns list the runs
    assert listed["success"], listed
    second = run if event_name == "_on_cell" else DEFAULT_SORT
    good = visitor.run(event_named(server, event_name), [run, second, None], event_data={"index": [0, 1], "value": 1})
    assert good["success"], good
    message = visitor.run(event_named(server, event_name), [run, second, None], event_data={"index": index, "value": 1})
    error = error_of(message)
    assert not message["success"] and is_sentence(error) and "cell" in error, (index, message)


@pytest.mark.parametrize("entries, words", [
    ({"test/1/a.jpg": b"x", "test/1/a.jpg/b.jpg": b"y"}, "both a file and a folder named test/1/a.jpg"),
    ({"test/1/" + "b" * 300 + ".jpg": b"x"}, "longer than 255 bytes"),
])
def test_zip_names_the_file_system_refuses_get_a_sentence(server, visitor, entries, words):
    error = error_of(evaluate(visitor, server, labeled_zip(entries)))
    assert is_sentence(error) and words in error and "Error)" not in error, error


# --- 9. every Python example of the README runs against the live server ---------------------------

def readme_python() -> list[str]:
    """The README's Python examples, fenced blocks indented or not, in order."""
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", README.read_text(), flags=re.S | re.M)
    return ["\n".join(line[len(indent):] for line in body.splitlines()) for indent, body in blocks]


@pytest.mark.slow  # loads checkpoints anew, evaluates a set and analyses a video, as a reader would
def test_every_python_example_of_the_readme_runs(server, checkpoint_dir, tmp_path, monkeypatch):  # noqa: F811
    import torch

    from poster.weights import locate

    examples = readme_python()
    assert len(examples) >= 3 and any("/evaluate" in e for e in examples) and any("/analyze" in e for e in examples)
    shutil.copy(astronaut_path(), tmp_path / "photo.jpg")
    (tmp_path / "set.zip").write_bytes(labeled_zip(folder=tmp_path / "set-images"))
    face = face_patch(np.asarray(Image.open(astronaut_path()).convert("RGB")), ASTRONAUT_FACE)
    write_clip(tmp_path / "interview.mp4", [scene([(face, 100, 60)])] * 10, fps=10, audio=True)  # one second
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(locate.ENV_DIR, str(checkpoint_dir))
    namespace: dict = {"batch": torch.rand(2, 3, 224, 224)}  # the one name the examples leave to the reader
    for example in examples:
        exec(compile(example.replace("http://127.0.0.1:7860/", server), "README.md", "exec"), namespace)
    assert namespace["faces"][0]["label"] and namespace["summary"]["status"] == "done"
    assert namespace["logits"].shape == (2, 7)
    assert len(namespace["analysis"].table) == 5 and (tmp_path / "runs/interview/annotated.mp4").is_file()
