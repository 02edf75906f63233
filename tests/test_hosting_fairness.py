"""Fair to every visitor at once, attacked over raw HTTP on loopback: limits go by client address
(``X-Forwarded-For`` only behind a trusted proxy), not by session hash; evaluations never take the
photo slots; the upload cache is capped per client and in all, and unused or refused uploads go.

On loopback every request comes from 127.0.0.1: clients are told apart by ``X-Forwarded-For``
with ``POSTER_TRUSTED_PROXY=1``, and without it the header must change nothing.
"""
from __future__ import annotations

import io
import json
import secrets
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from demo.serving import clients
from demo.serving.clients import client_address
from demo.serving.files import upload_cache
from demo.serving.hosting import REPLACED
from demo.webcam import precision as webcam_precision
from poster.data import sample_faces as _data
from tests._app import RAF_FOLDERS, app_store, astronaut_path, checkpoint_dir, served  # noqa: F401
from tests._http import API, Visitor, error_of, event_named, file_meta

# Attacks on a served app over HTTP: the full suite runs them, the fast subset leaves them out.
pytestmark = pytest.mark.slow

SETTINGS = {"POSTER_TRUSTED_PROXY": "1", "POSTER_SESSIONS_PER_ADDRESS": "3", "POSTER_CLIENT_UPLOADS_MB": "1.5",
            "POSTER_UPLOADS_MB": "40", "POSTER_UNUSED_UPLOAD_SECONDS": "2"}


@pytest.fixture(scope="module")
def server(app_store):  # noqa: F811
    patch = pytest.MonkeyPatch()
    for name, value in SETTINGS.items():
        patch.setenv(name, value)
    patch.setattr(clients, "_ledger", None)  # a ledger with this module's caps
    app_store.predictor("raf-db")
    try:
        with served(app_store) as url:
            yield url
    finally:
        patch.undo()


@pytest.fixture
def untrusted(monkeypatch):
    monkeypatch.delenv("POSTER_TRUSTED_PROXY")


def client(url: str, address: str | None = None) -> Visitor:
    """A visitor whose requests the (trusted) proxy says come from ``address`` (a fresh one by default)."""
    v = Visitor(url)
    v.http.headers["X-Forwarded-For"] = address or f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    return v


def photo(v: Visitor) -> dict:
    return file_meta(v.uploaded("astronaut.png", astronaut_path().read_bytes(), "image/png"))


# --- whose request is it -------------------------------------------------------------------------

def test_the_forwarded_address_counts_only_behind_a_trusted_proxy(monkeypatch):
    scope = {"client": ("127.0.0.1", 5000), "headers": [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9")]}
    monkeypatch.delenv("POSTER_TRUSTED_PROXY", raising=False)
    assert client_address(scope) == "127.0.0.1"
    monkeypatch.setenv("POSTER_TRUSTED_PROXY", "1")
    assert client_address(scope) == "203.0.113.9"  # the proxy's own entry; the first is the client's say


# --- 1. waiting requests, sessions and camera turns per client ----------------------------------------

def test_made_up_sessions_of_one_client_cannot_fill_the_queue(server):
    # 25 made-up sessions x 3 joins: 75 requests, more than the queue's 64 places, if each session
    # could keep three waiting. Per client, at most three wait: every join is taken, the queue never
    # fills, and another client is served.
    flooder, other = client(server), client(server)
    analyze = event_named(server, "analyze")
    payload = [photo(flooder), None]
    sessions = [uuid.uuid4().hex[:11] for _ in range(25)]
    joins = []
    for session in sessions:
        flooder.session = session
        joins += [flooder.join(analyze, payload) for _ in range(3)]
    assert [r.status_code for r in joins] == [200] * 75, [r.text for r in joins if r.status_code != 200][:3]
    message = other.run(analyze, [photo(other), None], timeout=300)
    assert message["success"], error_of(message)
    outcomes = {}
    for session in sessions:
        flooder.session = session
        outcomes |= flooder.results(3, timeout=300)
    assert len(outcomes) == 75 and any(error_of(m) == REPLACED for m in outcomes.values())


def test_without_a_trusted_proxy_the_forwarded_header_changes_nothing(server, untrusted):
    # Sessions "from" different forwarded addresses are one client's (127.0.0.1): past three, its
    # oldest session ends (with a trusted proxy they would be four clients, see the next test).
    first = client(server, "10.9.0.1")
    token = start_camera(server, first)
    pickers = event_named(server, "run_pickers_on_load")
    for i in range(3):
        assert client(server, f"10.9.0.{i + 2}").run(pickers, [])["success"]
    assert frame(server, first, token)["status"] == "closed"


def start_camera(server: str, v: Visitor) -> str:
    start = event_named(server, "on_start")
    message = v.run(start, [None, None, webcam_precision.default(False), 0.6])  # the radio's choice here
    opened = json.loads(message["output"]["data"][0])
    assert opened["status"] == "started", opened
    return opened["token"]


def frame(server: str, v: Visitor, token: str, data: str = "not a picture") -> dict:
    config = httpx.get(server + "config").json()
    live = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "webcam-live")
    body = {"session_hash": v.session, "component_id": live["id"], "fn_name": "frame",
            "data": {"token": token, "frame": data}}
    response = v.http.post(f"{API}/component_server/", json=body)
    assert response.status_code == 200, response.text
    return json.loads(response.json())


def test_a_client_keeps_only_a_few_sessions_and_its_oldest_goes(server):
    first = client(server, "10.1.1.1")
    token = start_camera(server, first)
    assert frame(server, first, token)["status"] != "closed"
    pickers = event_named(server, "run_pickers_on_load")
    for _ in range(2):  # two more sessions of the same client: within its three
        more = client(server, "10.1.1.1")
        assert more.run(pickers, [])["success"]
    assert frame(server, first, token)["status"] != "closed"
    for i in range(5):  # sessions of other clients push nobody out
        assert client(server, f"10.1.2.{i}").run(pickers, [])["success"]
    assert frame(server, first, token)["status"] != "closed"
    assert client(server, "10.1.1.1").run(pickers, [])["success"]  # a fourth: the first session ends
    assert frame(server, first, token)["status"] == "closed"
    stop_camera(server, "10.1.1.1")


def stop_camera(server: str, *addresses: str) -> None:
    """Stop: camera turns go by address, so any session of the client frees its place."""
    for address in addresses:
        assert client(server, address).run(event_named(server, "on_stop"), [None])["success"]


def test_one_address_holds_one_place_in_the_camera_line_and_sees_its_wait(server):
    import threading

    holder, late = client(server, "10.2.0.1"), client(server, "10.2.0.3")
    twins = [client(server, "10.2.0.2") for _ in range(3)]  # one client, three sessions
    tokens = {id(v): start_camera(server, v) for v in [holder, *twins, late]}
    stop = threading.Event()

    def keep_streaming() -> None:  # the holder keeps its turn while the others ask
        while not stop.is_set():
            frame(server, holder, tokens[id(holder)])
            stop.wait(0.3)

    assert frame(server, holder, tokens[id(holder)], _data_url())["status"] == "ok"
    streaming = threading.Thread(target=keep_streaming)
    streaming.start()
    try:
        places = [frame(server, t, tokens[id(t)]) for t in twins]
        waiting = frame(server, late, tokens[id(late)])
    finally:
        stop.set()
        streaming.join()
    assert [(p["status"], p["position"]) for p in places] == [("waiting", 1)] * 3, places
    assert waiting["status"] == "waiting" and waiting["position"] == 2, waiting
    assert "1 ahead of you" in waiting["message"] and "your turn in at most" in waiting["message"]
    assert 0 < waiting["expected"] <= 2 * 120
    stop_camera(server, "10.2.0.1", "10.2.0.2", "10.2.0.3")


def _data_url() -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(astronaut_path().read_bytes()).decode()


# --- 2. evaluations: one per client, one at a time, never in the photos' slots ---------------------

def labeled_zip(folder: Path, count: int) -> bytes:
    _data.write_imagefolder(folder, [i % 7 for i in range(count)], RAF_FOLDERS)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


@pytest.fixture
def held_evaluations(monkeypatch) -> Iterator[threading.Event]:
    """Evaluations reach their first batch and wait there until the event is set (at the latest when
    the test ends), so they are surely under way while the test sends its other requests."""
    from demo.explorer import evaluate_upload

    gate, original = threading.Event(), evaluate_upload.evaluate_in_steps

    def held(*args, **kwargs):
        gate.wait(timeout=300)
        return (yield from original(*args, **kwargs))

    monkeypatch.setattr(evaluate_upload, "evaluate_in_steps", held)
    try:
        yield gate
    finally:
        gate.set()


def test_evaluations_take_no_photo_slot_and_one_client_runs_one(server, tmp_path, held_evaluations):
    evaluate = event_named(server, "evaluate")
    archive = labeled_zip(tmp_path / "set", 7)
    first, second = client(server, "10.3.0.1"), client(server, "10.3.0.1")
    other, viewer = client(server, "10.3.0.2"), client(server, "10.3.0.3")
    runs = []
    for v in (first, other):
        path = v.uploaded("set.zip", archive, "application/zip")
        joined = v.join(evaluate, [file_meta(path, "set.zip"), "raf-db", None, None, None])
        assert joined.status_code == 200, joined.text
        runs.append(joined.json()["event_id"])
    refused = second.join(evaluate, [file_meta(second.uploaded("set.zip", archive, "application/zip"), "set.zip"),
                                     "raf-db", None, None, None])
    assert refused.status_code == 503 and "already have an evaluation" in refused.json()["detail"]
    # Two evaluations are under way (held before their first batch): a photo from a third client is
    # answered all the same.
    message = viewer.run(event_named(server, "analyze"), [photo(viewer), None], timeout=300)
    assert message["success"], error_of(message)
    assert not held_evaluations.is_set()
    held_evaluations.set()
    with first.http.stream("GET", f"{API}/queue/data", params={"session_hash": first.session}) as stream:
        finished = None
        for line in stream.iter_lines():
            if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_completed":
                finished = json.loads(line[5:])
                break
    assert finished and finished["success"], finished
    assert finished["output"]["data"][0]["num_images"] == 7
    assert other.results(1, timeout=600)[runs[1]]["success"]


# --- 4. the upload cache -------------------------------------------------------------------------

def cached(path: str) -> bool:
    return Path(path).exists() and upload_cache() in Path(path).resolve().parents


def test_a_refused_zip_leaves_the_cache_at_once(server):
    v = client(server)
    path = v.uploaded("set.zip", b"not a zip at all", "application/zip")
    assert cached(path)
    message = v.run(event_named(server, "evaluate"), [file_meta(path, "set.zip"), "raf-db", None, None, None])
    assert "Not a readable .zip archive" in error_of(message)
    assert not cached(path)


def test_uploads_are_capped_per_client(server):
    v, other = client(server), client(server)
    blob = secrets.token_bytes(900 * 1024)
    assert v.upload("a.bin", blob).status_code == 200
    refused = v.upload("b.bin", secrets.token_bytes(900 * 1024))
    assert refused.status_code == 429 and "MB per visitor" in refused.text, refused.text
    assert other.upload("b.bin", secrets.token_bytes(900 * 1024)).status_code == 200


def test_uploads_no_event_uses_are_removed_after_a_while(server):
    v = client(server)
    unused = v.uploaded("unused.bin", secrets.token_bytes(1000))
    used = photo(v)
    assert v.run(event_named(server, "analyze"), [used, None], timeout=300)["success"]
    time.sleep(2.5)  # past POSTER_UNUSED_UPLOAD_SECONDS
    client(server).upload("next.bin", b"x")  # any upload sweeps the cache
    assert not cached(unused) and cached(used["path"])
