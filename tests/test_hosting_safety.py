"""The app served on loopback and attacked over raw HTTP: file paths, floods, large bodies, leftovers."""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from demo.serving.files import UPLOAD_REFUSED, upload_cache
from demo.serving.hosting import REPLACED
from tests._app import RAF_CLASSES, app_store, astronaut_path, checkpoint_dir, served  # noqa: F401
from tests._http import Visitor, error_of, event_named, events, file_meta

# Attacks on a served app over HTTP: the full suite runs them, the fast subset leaves them out.
pytestmark = pytest.mark.slow

IMAGE_LIMIT_MB = 1  # the test server's photo limit (POSTER_MAX_IMAGE_MB)


@pytest.fixture(scope="module")
def server(app_store):  # noqa: F811
    old = os.environ.get("POSTER_MAX_IMAGE_MB")
    os.environ["POSTER_MAX_IMAGE_MB"] = str(IMAGE_LIMIT_MB)
    try:
        with served(app_store) as url:
            yield url
    finally:
        if old is None:
            os.environ.pop("POSTER_MAX_IMAGE_MB", None)
        else:
            os.environ["POSTER_MAX_IMAGE_MB"] = old


@pytest.fixture
def visitor(server):
    v = Visitor(server)
    yield v
    v.close()


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def astronaut_bytes() -> bytes:
    return astronaut_path().read_bytes()


def faces_of(message: dict) -> list[dict]:
    return message["output"]["data"][4]


# --- 1. no event opens a file that no visitor uploaded ------------------------------------

@pytest.fixture
def outside_files(tmp_path: Path):
    """Files a visitor must never get the server to open: a photo, a folder, a link to the photo
    inside Gradio's cache, a missing file."""
    secret = tmp_path / "secret.png"
    Image.fromarray(np.full((64, 64, 3), (10, 200, 30), np.uint8)).save(secret)
    cache = upload_cache()
    cache.mkdir(parents=True, exist_ok=True)
    link = cache / f"link-{os.getpid()}-{time.monotonic_ns()}.png"
    link.symlink_to(secret)
    yield secret, link
    link.unlink(missing_ok=True)


def attack_payloads(secret: Path, link: Path, url: str) -> dict[str, object]:
    cache = upload_cache()
    return {
        "path without meta": {"path": str(secret)},
        "path with meta": file_meta(str(secret)),
        "folder": {"path": str(secret.parent)},
        "missing file": {"path": str(secret.parent / "missing.png")},
        "dot-dot out of the cache": file_meta(str(cache / ".." / os.path.relpath(secret, cache.parent))),
        "link in the cache": file_meta(str(link)),
        "server file": {"path": "/etc/hostname"},
        "url of a file": {"url": f"file://{secret}", "meta": {"_type": "gradio.FileData"}},
        "http url as path": file_meta(url + "config"),
        "bare string": str(secret),
        "list of payloads": [{"path": str(secret)}],
    }


def test_every_event_that_takes_a_file_refuses_paths_no_upload_made(server, visitor, outside_files):
    secret, link = outside_files
    file_events = [e for e in events(server) if e.file_inputs]
    # The photo analysis (public and private re-run) and the checkpoint upload at least; the
    # webcam takes its frames as data (tests/test_webcam_server.py sends it the same payloads).
    assert {"analyze", "_reanalyze", "_upload"} <= {e.api_name for e in file_events}
    for event in file_events:
        for name, payload in attack_payloads(secret, link, server).items():
            data = [None] * len(event.inputs)
            for i in event.file_inputs:
                data[i] = payload
            message = visitor.run(event, data)
            assert error_of(message) == UPLOAD_REFUSED, (event.api_name, name, message)


def test_an_uploaded_photo_and_the_example_photos_are_analyzed(server, visitor):
    analyze = event_named(server, "analyze")
    path = visitor.uploaded("astronaut.png", astronaut_bytes(), "image/png")
    message = visitor.run(analyze, [file_meta(path), None])
    assert message["success"] and len(faces_of(message)) == 1
    assert faces_of(message)[0]["label"] in RAF_CLASSES
    config = httpx.get(server + "config").json()
    samples = [c for c in config["components"] if c["type"] == "dataset"][0]["props"]["samples"]
    example = samples[0][0]
    assert example["path"] and upload_cache() in Path(example["path"]).resolve().parents
    message = visitor.run(analyze, [example, None])
    assert message["success"] and len(faces_of(message)) == 1


# --- 2. one session cannot take the queue from everyone else ------------------------------

def test_a_flood_from_one_session_leaves_room_for_others(server):
    flooder, other = Visitor(server), Visitor(server)
    analyze = event_named(server, "analyze")
    payload = [file_meta(flooder.uploaded("astronaut.png", astronaut_bytes(), "image/png")), None]
    joins = [flooder.join(analyze, payload) for _ in range(70)]
    assert all(r.status_code == 200 for r in joins), {r.status_code for r in joins}
    path = other.uploaded("astronaut.png", astronaut_bytes(), "image/png")
    message = other.run(analyze, [file_meta(path), None], timeout=120)
    assert message["success"] and len(faces_of(message)) == 1
    outcomes = flooder.results(len(joins), timeout=120)
    replaced = [m for m in outcomes.values() if error_of(m) == REPLACED]
    served_ = [m for m in outcomes.values() if m["success"]]
    assert len(outcomes) == 70 and len(replaced) >= 60 and 1 <= len(served_) <= 10
    flooder.close()
    other.close()


# --- 3. uploaded checkpoints are each visitor's own ----------------------------------------

@pytest.mark.slow  # two checkpoint uploads over HTTP
def test_two_visitors_uploading_the_same_bytes_see_their_own_names(server, checkpoint_dir):  # noqa: F811
    upload = event_named(server, "_upload")
    views = event_named(server, "_refresh_model_views")  # the header and facts after a switch
    data = (checkpoint_dir / "rafdb_best.pth").read_bytes()
    headers = {}
    for name in ("rafdb_best.pth", "rafdb_best_copy.pth"):
        v = Visitor(server)
        message = v.run(upload, [file_meta(v.uploaded(name, data), name), None, None])
        assert f"Loaded {name} safely" in message["output"]["data"][2]
        headers[name] = str(v.run(views, [None, None])["output"]["data"][0])
        v.close()
    assert "rafdb_best.pth (uploaded)" in headers["rafdb_best.pth"]
    assert "rafdb_best_copy.pth (uploaded)" in headers["rafdb_best_copy.pth"]


# --- 7. images have their own limit; refused and finished uploads leave no file -----------

def cache_files() -> set[Path]:
    return {p for p in upload_cache().rglob("*") if p.is_file()}


def test_the_upload_route_refuses_photos_over_the_image_limit(visitor):
    before = cache_files()
    big = os.urandom((IMAGE_LIMIT_MB + 1) * 2**20)
    for name, kind in (("holiday.jpg", "image/jpeg"), ("holiday.bin", "image/png")):
        response = visitor.upload(name, big, kind)
        assert response.status_code == 413 and "at most 1 MB" in response.text
    assert cache_files() == before
    # Checkpoints keep the large limit.
    assert visitor.upload("weights.pth", big).status_code == 200


def test_refused_photos_are_deleted_from_the_cache(server, visitor):
    analyze = event_named(server, "analyze")
    too_big = Path(visitor.uploaded("photo.pth", os.urandom((IMAGE_LIMIT_MB + 1) * 2**20)))
    message = visitor.run(analyze, [file_meta(str(too_big)), None])
    assert "images up to 1 MB are accepted" in error_of(message) and not too_big.exists()
    text = Path(visitor.uploaded("notes.jpg", b"a text file, not a photo " * 40, "image/jpeg"))
    message = visitor.run(analyze, [file_meta(str(text)), None])
    assert "not an image" in error_of(message).lower() and not text.exists()


def test_a_refused_checkpoint_is_deleted_from_the_cache(server, visitor):
    upload = event_named(server, "_upload")
    path = Path(visitor.uploaded("model.pth", b"not a checkpoint at all"))
    message = visitor.run(upload, [file_meta(str(path)), None, None])
    assert message["success"] and "Upload refused" in message["output"]["data"][2]
    assert not path.exists()


def _until(condition, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_a_sessions_uploads_go_when_its_last_user_leaves(server):
    analyze = event_named(server, "analyze")
    photo = np.array(Image.open(astronaut_path()).convert("RGB"))
    photo[0, 0] = (1, 2, 3)  # bytes no other test uploads
    data = png_bytes(photo)
    first, second = Visitor(server), Visitor(server)
    paths = [Path(v.uploaded("mine.png", data, "image/png")) for v in (first, second)]
    assert paths[0] == paths[1]  # Gradio names uploads by their content: both share one file
    for v in (first, second):
        assert v.run(analyze, [file_meta(str(paths[0])), None])["success"]

    def leave(v: Visitor) -> None:
        with httpx.stream("GET", f"{server}gradio_api/heartbeat/{v.session}", timeout=10) as response:
            next(response.iter_lines())  # connected; leaving the block closes the page

    leave(first)
    time.sleep(1.5)
    assert paths[0].exists()  # the second visitor still uses it
    leave(second)
    assert _until(lambda: not paths[0].exists())
    first.close()
    second.close()


# --- 8. user input is quoted short; request bodies are capped -----------------------------

def test_event_bodies_over_the_cap_are_refused(server, visitor):
    analyze = event_named(server, "analyze")
    body = {"data": ["x" * (3 * 2**20), None], "fn_index": analyze.fn_index, "session_hash": visitor.session}
    response = visitor.http.post("gradio_api/queue/join", json=body)
    assert response.status_code == 413
    import json

    def chunks():  # no declared length
        text = json.dumps(body).encode()
        for i in range(0, len(text), 2**16):
            yield text[i:i + 2**16]

    try:
        response = visitor.http.post("gradio_api/queue/join", content=chunks(),
                                     headers={"content-type": "application/json"})
        assert response.status_code >= 400
    except httpx.HTTPError:
        pass  # the server closed the connection: refused as well


def test_a_huge_dropdown_value_is_quoted_short(server, visitor, capfd):
    switch = event_named(server, "_switch")
    capfd.readouterr()
    message = visitor.run(switch, ["A" * 10**6, None, None])
    error = error_of(message)
    assert error and len(error) <= 500 and "AAAA" in error
    out, err = capfd.readouterr()
    assert len(out) + len(err) < 20_000


@pytest.mark.slow  # starts app.py in a process of its own
def test_sigterm_leaves_no_temporary_files(tmp_path, checkpoint_dir):  # noqa: F811
    import signal
    import subprocess
    import sys

    from demo import free_port

    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    env = {**os.environ, "TMPDIR": str(temp), "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "POSTER_CHECKPOINT_DIR": str(tmp_path / "none"), "OMP_NUM_THREADS": "1"}
    env.pop("GRADIO_TEMP_DIR", None)
    root = Path(__file__).resolve().parents[1]
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        assert _until(lambda: _answers(url) or proc.poll() is not None, 180) and proc.poll() is None
        visitor = Visitor(url)
        analyze = event_named(url, "analyze")
        photo = visitor.uploaded("astronaut.png", astronaut_bytes(), "image/png")
        assert visitor.run(analyze, [file_meta(photo), None])["success"]
        upload = event_named(url, "_upload")
        weights = visitor.uploaded("rafdb_best.pth", (checkpoint_dir / "rafdb_best.pth").read_bytes())
        message = visitor.run(upload, [file_meta(weights), None, None])
        assert "safely" in message["output"]["data"][2]
        visitor.close()
        left = [p.name for p in temp.iterdir()]
        assert any(n.startswith("poster-uploads-") for n in left) and any(n.startswith("poster-app-") for n in left)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert sorted(str(p.relative_to(temp)) for p in temp.rglob("*")) == []


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_file_route_serves_no_server_file(server, visitor):
    from demo.serving.files import image_file

    ours = image_file(np.zeros((8, 8, 3), np.uint8))  # an image the app wrote, before Gradio copies it
    for path in ("/etc/hostname", str(Path(__file__).resolve()), ours, "/proc/self/environ"):
        response = visitor.http.get(f"gradio_api/file={path}")
        assert response.status_code == 403, path
