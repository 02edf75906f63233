"""A raw HTTP visitor of the running app: what an attacker sends, without gradio_client.

Events are joined on Gradio's queue (``POST /gradio_api/queue/join``) and their results read
from the session's server-sent events (``GET /gradio_api/queue/data``); files go to the upload
route (``POST /gradio_api/upload``). Events are found by what ``/config`` says they take.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

API = "gradio_api"
FILE_TYPES = {"image", "file", "gallery", "video", "audio", "model3d", "imageeditor", "uploadbutton",
              "multimodaltextbox"}


def file_meta(path: str, name: str | None = None) -> dict:
    """A payload as the browser sends it for an uploaded file (with Gradio's marker)."""
    return {"path": path, "orig_name": name or path.rsplit("/", 1)[-1], "meta": {"_type": "gradio.FileData"}}


@dataclass
class Event:
    fn_index: int
    inputs: list[str]  # component types
    api_name: str | None
    connection: str

    @property
    def file_inputs(self) -> list[int]:
        return [i for i, t in enumerate(self.inputs) if t in FILE_TYPES]


def events(url: str) -> list[Event]:
    """Every event of the app, from its config (public and private alike)."""
    config = httpx.get(url + "config", timeout=30).json()
    types = {c["id"]: c["type"] for c in config["components"]}
    return [Event(d["id"], [types.get(i, "?") for i in d["inputs"]], d.get("api_name"), d.get("connection", "sse"))
            for d in config["dependencies"]]


def event_named(url: str, api_name: str) -> Event:
    return next(e for e in events(url) if e.api_name == api_name)


@dataclass
class Visitor:
    """One browser session: its own session hash, joins and results."""

    url: str
    session: str = field(default_factory=lambda: secrets.token_hex(6))

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def upload(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> httpx.Response:
        return self.http.post(f"{API}/upload", files={"files": (name, data, content_type)})

    def uploaded(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        response = self.upload(name, data, content_type)
        response.raise_for_status()
        return response.json()[0]

    def join(self, event: Event | int, data: list[Any], event_data: Any = None) -> httpx.Response:
        fn_index = event.fn_index if isinstance(event, Event) else event
        return self.http.post(f"{API}/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": self.session,
                                                          "event_data": event_data, "trigger_id": None})

    def results(self, wanted: int, timeout: float = 120) -> dict[str, dict]:
        """Read this session's messages until ``wanted`` events completed: {event id: message}."""
        done: dict[str, dict] = {}
        with self.http.stream("GET", f"{API}/queue/data", params={"session_hash": self.session},
                              timeout=httpx.Timeout(timeout, read=timeout)) as response:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    done[message["event_id"]] = message
                    if len(done) >= wanted:
                        break
                if message.get("msg") == "close_stream":
                    break
        return done

    def run(self, event: Event | int, data: list[Any], event_data: Any = None, timeout: float = 120) -> dict:
        """Join one event and return its completion message (``success``, ``output``)."""
        response = self.join(event, data, event_data)
        response.raise_for_status()
        event_id = response.json()["event_id"]
        return self.results(1, timeout)[event_id]

    def close(self) -> None:
        self.http.close()


def error_of(message: dict) -> str | None:
    return None if message.get("success") else (message.get("output") or {}).get("error")
