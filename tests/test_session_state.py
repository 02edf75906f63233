"""State for a session is made only when it does something that needs it (issue 24).

Session hashes are the client's to choose: an attacker joins events under thousands of made-up
ones. Gradio 6.31 made ~0.5 MB of per-session copies (its config, every block's config) for each;
the app's webcam state held a ``LiveSession`` by default. Attacked over raw HTTP on loopback, a
made-up session now keeps at most what its event set, and nothing once it is idle; the heavy
defaults are made by the handlers that need them.
"""
from __future__ import annotations

import datetime
import json
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import gradio as gr
import httpx
import pytest

from demo.serving import clients
from demo.serving.camera_slots import CameraSlots
from demo.serving.sessions import IMMUTABLE, LeanSessionState, LeanStateHolder, busy_sessions
from demo.webcam import live_tracking as tracking
from demo.webcam.live_channel import LiveChannels
from demo.webcam.tab import StartView, download_results, freeze_frame, start_stream, stop_stream, update_settings
from tests._app import app_store, checkpoint_dir  # noqa: F401
from tests._http import API, Visitor, event_named

SESSIONS = 48  # made-up sessions per event, joined at once
# What a made-up session may keep, in bytes of its own (see ``own_bytes``): before, ~480,000.
SMALL = 2_000
WITH_UPDATES = 24_000  # an event that updates components (the Explorer's pickers): their copies


@pytest.fixture(scope="module")
def served(app_store):  # noqa: F811
    from demo import served_demo

    patch = pytest.MonkeyPatch()
    patch.setenv("POSTER_TRUSTED_PROXY", "1")
    patch.setattr(clients, "_ledger", None)
    try:
        with served_demo(app_store) as (demo, url):
            yield demo, url
    finally:
        patch.undo()


def made_up(url: str, count: int) -> list[Visitor]:
    """Visitors with made-up session hashes, each from an address of its own (a trusted proxy says so)."""
    visitors = []
    for i in range(count):
        v = Visitor(url, uuid.uuid4().hex[:11])
        v.http.headers["X-Forwarded-For"] = f"10.24.{i // 250}.{i % 250}"
        visitors.append(v)
    return visitors


def flood(url: str, event: str, data: list, count: int = SESSIONS) -> list[str]:
    """``count`` made-up sessions join ``event`` at once and read nothing back; returns their hashes."""
    visitors = made_up(url, count)
    fn = event_named(url, event)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda v: v.join(fn, data).status_code, visitors))
    for v in visitors:
        v.close()
    assert codes == [200] * count
    return [v.session for v in visitors]


def settle(demo: Any, sessions: list[str], deadline: float = 120) -> None:
    """Wait until none of ``sessions`` has an event queued or running."""
    end = time.monotonic() + deadline
    while set(sessions) & busy_sessions(demo):
        assert time.monotonic() < end, "the events never finished"
        time.sleep(0.1)


def own_bytes(state: Any, app: Any) -> int:
    """Bytes of what ``state`` holds that the app does not share with every session: followed
    through containers and objects, stopping at the app's own blocks, events and config."""
    shared = {id(app), id(app.default_config), id(app.blocks), id(app.fns), *map(id, app.blocks.values()),
              *map(id, app.fns.values())}
    seen: set[int] = set()

    def size(obj: Any) -> int:
        if id(obj) in seen or id(obj) in shared or isinstance(obj, (type, gr.Blocks)) or callable(obj):
            return 0
        seen.add(id(obj))
        total = sys.getsizeof(obj)
        if isinstance(obj, dict):
            total += sum(size(k) + size(v) for k, v in obj.items())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            total += sum(size(v) for v in obj)
        elif hasattr(obj, "maps"):  # a ChainMap: what it adds, and where it looks
            total += sum(size(m) for m in obj.maps)
        elif hasattr(obj, "__dict__"):
            total += size(vars(obj))
        return total

    return size(state)


def kept(demo: Any, sessions: list[str]) -> dict[str, int]:
    holder = demo.state_holder
    return {s: own_bytes(holder.session_data[s], demo) for s in sessions if s in holder.session_data}


# --- over HTTP, as an attacker sends it -----------------------------------------------------------

@pytest.mark.parametrize("event, data, bound", [
    ("on_stop", [None], SMALL),                     # the webcam's Stop: reads the session's LiveSession
    ("update_settings", [None, None, "float32", 0.5], SMALL),  # a webcam setting changed: reads it too
    ("download_results", [None], WITH_UPDATES),     # the webcam's results file: reads it, hides the file
    ("run_pickers_on_load", [], WITH_UPDATES),      # the Explorer's pickers: updates components
])
@pytest.mark.slow  # made-up sessions attack a served app over HTTP
def test_made_up_sessions_keep_next_to_nothing_and_nothing_once_idle(served, event, data, bound):
    demo, url = served
    sessions = flood(url, event, data)
    settle(demo, sessions)
    sizes = kept(demo, sessions)
    assert sizes and max(sizes.values()) <= bound, sorted(sizes.values())[-3:]
    assert all(isinstance(demo.state_holder.session_data[s], LeanSessionState) for s in sizes)
    assert not any(isinstance(v, tracking.LiveSession) for s in sizes
                   for v in demo.state_holder.session_data[s].state_data.values())

    demo.state_holder.sweep(0)  # as the holder does every second for sessions idle a minute
    queue = demo._queue
    if bound == SMALL:  # they hold nothing: they go, with the messages nobody read
        assert not kept(demo, sessions)
        assert not set(sessions) & (set(queue.pending_messages_per_session) | set(queue.pending_event_ids_session))


@pytest.mark.slow  # made-up sessions attack a served app over HTTP
def test_a_made_up_session_that_starts_the_camera_gets_one_live_session_and_loses_it_when_ended(served):
    demo, url = served
    (v,) = made_up(url, 1)
    message = v.run(event_named(url, "on_start"), [None, None, "float32", 0.6])
    token = json.loads(message["output"]["data"][0])["token"]
    state = demo.state_holder.session_data[v.session]
    lives = [x for x in state.state_data.values() if isinstance(x, tracking.LiveSession)]
    assert len(lives) == 1 and lives[0].token == token

    config = httpx.get(url + "config").json()
    live = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "webcam-live")
    body = {"session_hash": v.session, "component_id": live["id"], "fn_name": "frame",
            "data": {"token": token, "frame": "not a picture"}}
    assert json.loads(v.http.post(f"{API}/component_server/", json=body).json())["status"] != "closed"
    assert v.run(event_named(url, "on_stop"), [None])["success"]

    del lives, state
    demo.state_holder.end(v.session)  # what SessionBook's end hook does
    assert v.session not in demo.state_holder.session_data
    import gc

    gc.collect()
    assert json.loads(v.http.post(f"{API}/component_server/", json=body).json())["status"] == "closed"


def test_the_app_keeps_sessions_in_a_lean_holder(served):
    demo, _ = served
    assert type(demo.state_holder) is LeanStateHolder and demo.server_app.state_holder is demo.state_holder


def test_no_state_default_is_a_heavy_object(app_store):  # noqa: F811
    from demo import build_demo

    demo = build_demo(app_store)
    defaults = {b._id: b.value for b in demo.blocks.values() if isinstance(b, gr.State)}
    heavy = {k: v for k, v in defaults.items()
             if not (isinstance(v, IMMUTABLE) or (isinstance(v, (list, dict, tuple)) and not v))}
    assert defaults and not heavy, heavy


# --- the webcam's handlers make its state ----------------------------------------------------------

def test_start_makes_the_live_session_and_the_other_handlers_make_none():
    channels, slots = LiveChannels(), CameraSlots(1, 120)
    update_settings(None, "raf-db", "float32", 0.3)  # before Start: nothing to change, nothing made
    assert download_results(None).results["visible"] is False
    stop_stream(None, slots=slots, visitor="v", channels=channels)
    assert len(channels) == 0

    view = start_stream(None, "raf-db", "float32", 0.3, channels=channels, visitor="v")
    assert isinstance(view, StartView) and isinstance(view.session, tracking.LiveSession)
    opened = json.loads(view.live)
    assert opened["status"] == "started" and channels.find(opened["token"]) is view.session
    assert view.session.settings == tracking.LiveSettings("raf-db", "float32", 0.3) and view.session.visitor == "v"
    again = start_stream(view.session, "raf-db", "float32", 0.3, channels=channels, visitor="v")
    assert again.session is view.session and json.loads(again.live)["token"] == opened["token"]


def test_freezing_before_start_asks_for_the_camera(app_store):  # noqa: F811
    view = freeze_frame(None, "raf-db", store=app_store)
    assert view.frozen is None and "Start the camera" in view.frozen_summary


# --- the holder on its own ---------------------------------------------------------------------------

@pytest.fixture
def app():
    deleted: list[Any] = []
    with gr.Blocks() as blocks:
        kept_ = gr.State(None, delete_callback=deleted.append)
        listed = gr.State([])
        choice = gr.Dropdown(["a", "b"])
    holder = LeanStateHolder()
    holder.set_blocks(blocks)
    return SimpleNamespace(blocks=blocks, holder=holder, kept=kept_, listed=listed, choice=choice, deleted=deleted)


def test_a_session_shares_the_apps_config_until_a_component_is_updated_for_it(app):
    first, second = app.holder["first"], app.holder["second"]
    assert first.blocks_config is app.blocks.default_config and first.holds_nothing()
    assert first[app.kept._id] is None and first.state_data == {}  # an immutable default is not copied
    assert first[app.listed._id] == [] and first.holds_nothing()  # an empty copy is still nothing

    first[app.choice._id] = gr.Dropdown(["c"], render=False)
    assert list(first.own_components()) == [app.choice._id] and not first.holds_nothing()
    assert first[app.choice._id].choices == [("c", "c")]
    assert second[app.choice._id] is app.choice and second.own_components() == {}
    assert app.blocks.default_config.blocks[app.choice._id] is app.choice
    first[app.listed._id].append("x")
    assert second[app.listed._id] == []


def test_ending_a_session_runs_its_delete_callbacks_and_forgets_it(app):
    state = app.holder["s"]
    state[app.kept._id] = "uploaded.pth"
    assert not state.holds_nothing()
    app.holder.end("s")
    assert app.deleted == ["uploaded.pth"] and "s" not in app.holder.session_data
    app.holder.end("never-seen")  # nothing to end: no error


def test_the_sweep_spares_busy_sessions_and_those_with_state(app):
    for name in ("idle", "busy", "holding", "closed"):
        app.holder[name]
    app.holder["holding"][app.kept._id] = "value"
    app.holder["closed"][app.kept._id] = "old"
    app.holder["closed"].is_closed = True
    app.holder.time_last_used["closed"] -= datetime.timedelta(hours=2)
    app.blocks._queue = SimpleNamespace(event_ids_to_events={"e": SimpleNamespace(session_hash="busy")},
                                        active_jobs=[], pending_messages_per_session={}, pending_event_ids_session={})
    assert app.holder.sweep(3600) == ["closed"] and app.deleted == ["old"]
    assert sorted(app.holder.sweep(0)) == ["idle"]
    assert set(app.holder.session_data) == {"busy", "holding"}
