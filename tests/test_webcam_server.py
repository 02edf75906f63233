"""The webcam's events on a running server, sent raw over HTTP as any client could send them."""
from __future__ import annotations

import base64
import io
import json
import re
import uuid

import httpx
import numpy as np
import pytest
from PIL import Image

from demo.webcam import precision as webcam_precision
from tests._app import app_store, astronaut_path, checkpoint_dir, served  # noqa: F401

TIMEOUT = 120


@pytest.fixture(scope="module")
def server(app_store):  # noqa: F811
    app_store.predictor("raf-db")
    with served(app_store) as url:
        yield url


@pytest.fixture(scope="module")
def config(server) -> dict:
    """The running app's config, as the page fetches it."""
    return httpx.get(server + "config", timeout=TIMEOUT).json()


def live_view(config: dict) -> dict:
    """The live view's component in ``config``."""
    return next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "webcam-live")


@pytest.fixture(scope="module")
def events(config) -> dict:
    """fn_index of the webcam's Start and Stop events, and the live view's component id."""
    live = live_view(config)
    found = {"component": live["id"], "server_fns": live["props"].get("server_fns")}
    for index, dependency in enumerate(config["dependencies"]):
        for target, event in dependency["targets"]:
            if target == live["id"]:
                found[event] = dependency.get("id", index)
    return found


def join(server: str, fn_index: int, data: list, event_data=None, session: str | None = None) -> dict:
    """Queue one event and wait for its end; returns Gradio's final message (success, output)."""
    session = session or uuid.uuid4().hex[:11]
    body = {"data": data, "event_data": event_data, "fn_index": fn_index, "session_hash": session}
    with httpx.Client(base_url=server + "gradio_api/", timeout=TIMEOUT, headers=_forwarded(session)) as client:
        joined = client.post("queue/join", json=body)
        assert joined.status_code == 200, joined.text
        with client.stream("GET", "queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event never completed")


def result(message: dict) -> dict:
    assert message["success"], message
    return json.loads(message["output"]["data"][0])


def start(server, events, session: str, precision: str | None = None) -> str:
    """Press Start for ``session``: the token its frames must carry. ``precision``: the webcam's default
    here (bfloat16 on a CPU that runs it natively, else float32: the only choice the radio offers)."""
    precision = precision or webcam_precision.default(False)
    opened = result(join(server, events["live_start"], [None, None, precision, 0.6], {}, session))
    assert opened["status"] == "started" and len(opened["token"]) >= 32
    return opened["token"]


def post_frame(server, events, data, session: str) -> httpx.Response:
    """One call of the live view's server function, as the page sends it."""
    body = {"session_hash": session, "component_id": events["component"], "fn_name": "frame", "data": data}
    return httpx.post(server + "gradio_api/component_server/", json=body, timeout=TIMEOUT, headers=_forwarded(session))


_addresses: dict[str, str] = {}  # session -> the address a trusted proxy says it comes from


def _forwarded(session: str) -> dict:
    return {"X-Forwarded-For": _addresses[session]} if session in _addresses else {}


def frame_event(server, events, data, session=None, precision: str | None = None) -> dict:
    """Start ``session`` (once) and send one frame with its token; returns the result."""
    session = session or uuid.uuid4().hex[:11]
    if session not in _tokens:
        _tokens[session] = start(server, events, session, precision)
    response = post_frame(server, events, {**data, "token": _tokens[session]}, session)
    assert response.status_code == 200, response.text
    return json.loads(response.json())


_tokens: dict[str, str] = {}


def frame_url(image: np.ndarray, fmt: str = "JPEG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def test_start_stays_disabled_until_the_page_script_that_answers_it_has_run(config):
    """A press before ``js_on_load`` attaches its handler would be lost without a word."""
    live = live_view(config)
    start = re.search(r"<button[^>]*poster-live-start[^>]*>", live["props"]["html_template"]).group(0)
    assert re.search(r"\sdisabled[\s>]", start), start
    script = live["props"]["js_on_load"]
    assert script.rstrip().endswith('setState("idle");')  # enabled last, after every handler is attached
    assert 'startButton.disabled = state === "running" || state === "opening";' in script


def test_a_real_frame_gets_its_face_back_as_json(server, events, astronaut):
    session = uuid.uuid4().hex[:11]
    answer = frame_event(server, events, {"frame": frame_url(astronaut), "t": 7.0}, session)
    assert answer["status"] == "ok" and len(answer["faces"]) == 1 and answer["t"] == 7.0
    assert answer["width"] == 480 and answer["faces"][0]["p"] is not None
    join(server, events["live_stop"], [None], {}, session)


@pytest.mark.parametrize("event_data", [
    {"frame": {"path": "astronaut"}},
    {"frame": {"path": "astronaut", "meta": {"_type": "gradio.FileData"}}},
    {"frame": {"url": "astronaut"}},
    {"frame": "astronaut"},
    {"path": "astronaut"},
])
def test_no_payload_makes_the_webcam_open_a_path(server, events, event_data):
    path = str(astronaut_path())
    event_data = json.loads(json.dumps(event_data).replace('"astronaut"', json.dumps(path)))
    session = uuid.uuid4().hex[:11]
    answer = frame_event(server, events, event_data, session)
    assert answer["status"] == "error" and "faces" not in answer and "width" not in answer
    assert "astronaut" not in answer["message"] and "512" not in answer["message"]
    join(server, events["live_stop"], [None], {}, session)


def test_a_file_payload_in_the_start_events_inputs_is_not_opened(server, events, astronaut):
    payload = {"path": str(astronaut_path()), "meta": {"_type": "gradio.FileData"}}
    session = uuid.uuid4().hex[:11]
    message = join(server, events["live_start"], [payload, payload, payload, payload], {}, session)
    if message["success"]:  # the state inputs are the server's own; the made-up precision is ignored
        _tokens[session] = result(message)["token"]
        answer = frame_event(server, events, {"frame": frame_url(astronaut)}, session)
        assert answer["status"] == "ok" and answer["width"] == 480 and answer["precision"] in ("bfloat16", "float32")
    else:
        assert "astronaut" not in json.dumps(message)
    join(server, events["live_stop"], [None], {}, session)


@pytest.mark.parametrize("data", [None, "frame", 7, [], {}, {"token": None}, {"token": ["x"]}, {"token": "x" * 10_000},
                                  {"token": "forged-but-plausible-token-0123456789abcdef"}])
def test_a_frame_without_an_open_sessions_token_is_answered_not_processed(server, events, astronaut, data):
    if isinstance(data, dict):
        data = {**data, "frame": frame_url(astronaut)}
    response = post_frame(server, events, data, uuid.uuid4().hex[:11])
    assert response.status_code == 200
    answer = json.loads(response.json())
    assert answer["status"] == "closed" and "press Start" in answer["message"] and "faces" not in answer


def test_only_the_frame_function_is_served_and_an_oversized_frame_is_cut_off(server, events):
    assert events["server_fns"] == ["frame"] and "live_frame" not in events
    session = uuid.uuid4().hex[:11]
    body = {"session_hash": session, "component_id": events["component"], "fn_name": "__init__", "data": None}
    assert httpx.post(server + "gradio_api/component_server/", json=body, timeout=TIMEOUT).status_code == 404
    token = start(server, events, session)
    huge = post_frame(server, events, {"token": token, "frame": "data:image/jpeg;base64," + "A" * (80 * 2**20)},
                      session)
    assert huge.status_code == 413
    grey = np.full((300, 300, 3), 90, np.uint8)
    assert frame_event(server, events, {"frame": frame_url(grey)}, session)["status"] == "ok"
    join(server, events["live_stop"], [None], {}, session)


@pytest.mark.parametrize("size", [(1, 1), (39, 39), (500, 39)])
def test_a_tiny_frame_says_no_face_and_the_next_frame_works(server, events, astronaut, size):
    session = uuid.uuid4().hex[:11]
    tiny = np.full((size[1], size[0], 3), 200, np.uint8)
    answer = frame_event(server, events, {"frame": frame_url(tiny, "PNG")}, session)
    assert answer["message"] == (f"no face found (the image is {size[0]} x {size[1]} pixels; "
                                 "faces need at least 40)")
    after = frame_event(server, events, {"frame": frame_url(astronaut)}, session)
    assert len(after["faces"]) == 1
    join(server, events["live_stop"], [None], {}, session)


@pytest.mark.parametrize("kind", ["grey", "16-bit", "rgba"])
def test_frames_of_other_kinds_are_converted_over_http(server, events, astronaut, kind):
    grey = np.asarray(Image.fromarray(astronaut).convert("L"))
    image = {"grey": grey, "16-bit": grey.astype(np.uint16) * 257,
             "rgba": np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])}[kind]
    session = uuid.uuid4().hex[:11]
    answer = frame_event(server, events, {"frame": frame_url(image, "PNG")}, session)
    assert answer["status"] == "ok" and len(answer["faces"]) == 1
    join(server, events["live_stop"], [None], {}, session)


def test_a_100_megapixel_frame_is_refused(server, events):
    buffer = io.BytesIO()
    Image.new("L", (10_000, 10_000)).save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    session = uuid.uuid4().hex[:11]
    answer = frame_event(server, events, {"frame": url}, session)
    assert answer["status"] == "error" and "limit" in answer["message"]
    join(server, events["live_stop"], [None], {}, session)


def test_a_second_client_waits_until_the_first_stops(server, events, astronaut, monkeypatch):
    # Camera turns go by client address; on loopback a trusted proxy's header tells two clients apart.
    monkeypatch.setenv("POSTER_TRUSTED_PROXY", "1")
    first, second = uuid.uuid4().hex[:11], uuid.uuid4().hex[:11]
    _addresses.update({first: "10.5.0.1", second: "10.5.0.2"})
    frame = {"frame": frame_url(astronaut)}
    assert frame_event(server, events, frame, first)["status"] == "ok"
    waiting = frame_event(server, events, frame, second)
    assert waiting["status"] == "waiting" and waiting["message"].startswith("waiting for the camera slot, ")
    join(server, events["live_stop"], [None], {}, first)
    assert frame_event(server, events, frame, second)["status"] == "ok"
    join(server, events["live_stop"], [None], {}, second)


def test_the_queue_does_not_resummarize_its_whole_history_after_every_frame(app_store):  # noqa: F811
    """Gradio's default: a pandas summary of the last 10,000 events after each event (about 20 ms a
    frame once a stream has run a quarter hour). The app keeps 200 and summarizes every 100th."""
    from demo.app import build_demo

    queue = build_demo(app_store)._queue
    assert queue.ANALYTICS_MAX_EVENTS <= 200 and queue.ANAYLTICS_CACHE_FREQUENCY >= 100
