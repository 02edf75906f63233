"""Soak test: 16 honest visitors and one hostile client over HTTP, for minutes, on loopback.

    python benchmarks/soak.py [--minutes 10] [--visitors 16] [--url URL]

Starts the app in a child process with ``POSTER_TRUSTED_PROXY=1`` and the deterministic weights of
POSTER++ and ARM (same cost as the released files), unless ``--url`` names a running app started
that way. Each visitor has an address of its own (``X-Forwarded-For``, believed because of the
trusted-proxy setting) and loops over photos, explanations, webcam frames and architecture
switches; one visitor uploads a checkpoint and one evaluates a labeled set. Halfway through a
hostile client (one address) starts: made-up session hashes flooding the photo queue, webcam
frames, a pickle bomb (``bytearray(2**31)``), a decompression-bomb image in a zip, a stride-0
head of a million classes, and uploads until its cache share is full.

Prints the honest visitors' failed requests (goal: 0), their p95 latency before and after the
hostile client starts, what the hostile client got, and the server's memory before and after.
A failed request is a refused join, an event that ended in an error, or a frame answered with
an error; a webcam frame told to wait for the camera is an answer, not a failure.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import pickle
import random
import secrets
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from benchmarks._common import astronaut_path, deterministic_checkpoint  # noqa: E402
from benchmarks.load_test import rss_bytes, start_server  # noqa: E402

API = "gradio_api"
TIMEOUT = 300


class Client:
    """One browser session seen from the server: its address, its session hash, raw HTTP."""

    def __init__(self, url: str, address: str) -> None:
        self.url, self.address = url, address
        self.session = secrets.token_hex(6)
        self.http = httpx.Client(base_url=url, timeout=TIMEOUT, headers={"X-Forwarded-For": address})

    def upload(self, name: str, data: bytes) -> httpx.Response:
        return self.http.post(f"{API}/upload", files={"files": (name, data, "application/octet-stream")})

    def file(self, name: str, data: bytes) -> dict:
        response = self.upload(name, data)
        response.raise_for_status()
        path = response.json()[0]
        return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}

    def join(self, fn_index: int, data: list, event_data=None) -> httpx.Response:
        return self.http.post(f"{API}/queue/join", json={"data": data, "fn_index": fn_index, "event_data": event_data,
                                                          "session_hash": self.session, "trigger_id": None})

    def run(self, fn_index: int, data: list, event_data=None) -> dict:
        """Join one event and wait for its end: Gradio's final message, or {"success": False, "why": ...}."""
        joined = self.join(fn_index, data, event_data)
        if joined.status_code != 200:
            return {"success": False, "why": f"join {joined.status_code}: {joined.text[:120]}"}
        event_id = joined.json()["event_id"]
        with self.http.stream("GET", f"{API}/queue/data", params={"session_hash": self.session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                        return message
        return {"success": False, "why": "the stream ended without an answer"}

    def frame(self, component: int, token: str, data_url: str) -> dict:
        body = {"session_hash": self.session, "component_id": component, "fn_name": "frame",
                "data": {"token": token, "frame": data_url}}
        response = self.http.post(f"{API}/component_server/", json=body)
        if response.status_code != 200:
            return {"status": "error", "message": f"HTTP {response.status_code}"}
        return json.loads(response.json())


@dataclass
class Tally:
    """What the honest visitors saw: (time, seconds, kind) per request, failures with their reason."""

    start: float = field(default_factory=time.monotonic)
    done: list[tuple[float, float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, began: float, ok: bool, why: str = "") -> None:
        with self.lock:
            self.done.append((began - self.start, time.monotonic() - began, kind))
            if not ok:
                self.failures.append(f"{kind}: {why[:160]}")

    def p95(self, since: float, until: float) -> tuple[float, int]:
        with self.lock:
            times = sorted(s for t, s, k in self.done if since <= t < until and k != "frame")
        if not times:
            return float("nan"), 0
        return times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))], len(times)


def events(url: str) -> tuple[dict[str, int], int, str]:
    """The app's events by API name, the webcam component's id, and the webcam precision a visitor
    picks: the page's first offer (a CPU without bfloat16 instructions offers float32 only, and the
    Radio refuses anything else)."""
    config = httpx.get(url + "config", timeout=TIMEOUT).json()
    props = {c["id"]: c.get("props", {}) for c in config["components"]}
    live = next(i for i, p in props.items() if p.get("elem_id") == "webcam-live")
    radio = next(p for p in props.values() if p.get("elem_id") == "webcam-precision")
    return {d.get("api_name"): d["id"] for d in config["dependencies"]}, live, radio["choices"][0][1]


def photo_bytes() -> bytes:
    return astronaut_path().read_bytes()


def frame_url() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(astronaut_path()).convert("RGB").resize((320, 320)).save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def labeled_zip(count: int = 16, bomb: bool = False) -> bytes:
    from poster.data import sample_faces

    folder = Path(tempfile.mkdtemp(prefix="soak-set-"))
    sample_faces.write_imagefolder(folder, [i % 7 for i in range(count)], ("1", "2", "3", "4", "5", "6", "7"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
        if bomb:
            zf.writestr("test/1/bomb.png", _bomb_png())
    return buffer.getvalue()


def _bomb_png() -> bytes:
    import struct
    import zlib

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    at = data.index(b"IHDR")
    data[at + 4: at + 12] = struct.pack(">II", 20000, 20000)
    data[at + 17: at + 21] = struct.pack(">I", zlib.crc32(bytes(data[at: at + 17])))
    return bytes(data)


# --- the honest visitors ---------------------------------------------------------------------------

def visitor(url: str, number: int, until: float, tally: Tally, fns: dict[str, int], live: int, frame: str,
            extra: str | None, precision: str) -> None:
    """One visitor's loop; ``extra`` is "upload" or "evaluate" for the one visitor that does it once."""
    rng = random.Random(number)
    me = Client(url, f"10.0.0.{number + 1}")
    views = _timed(tally, "page", lambda: me.run(fns["_refresh_model_views_1"], [None, None]))
    keys = _choices(views)
    while time.monotonic() < until:
        action = extra or rng.choice(["photo", "photo", "explain", "webcam", "switch"])
        extra = None
        if action in ("photo", "explain"):
            payload = me.file("astronaut.png", photo_bytes())
            _timed(tally, "photo", lambda: me.run(fns["analyze"], [payload, None]))
            if action == "explain":
                _timed(tally, "explain", lambda: me.run(fns["_explain_predicted"], [None]))
        elif action == "webcam":
            started = _timed(tally, "webcam start", lambda: me.run(fns["on_start"], [None, None, precision, 0.6]))
            token = json.loads(started["output"]["data"][0]).get("token") if started.get("success") else None
            for _ in range(10 if token else 0):
                began = time.monotonic()
                answer = me.frame(live, token, frame)
                tally.record("frame", began, answer.get("status") in ("ok", "waiting", "busy"), str(answer))
                time.sleep(0.1)
            _timed(tally, "webcam stop", lambda: me.run(fns["on_stop"], [None]))
        elif action == "switch" and keys:
            _timed(tally, "switch", lambda: me.run(fns["_switch"], [rng.choice(keys), None, None]))
        elif action == "upload":
            payload = me.file("epoch59_acc0.9205.pth", deterministic_checkpoint("arm").read_bytes())
            _timed(tally, "upload", lambda: me.run(fns["_upload"], [payload, None, None]))
        elif action == "evaluate":
            payload = me.file("set.zip", labeled_zip())
            _timed(tally, "evaluate", lambda: me.run(fns["evaluate"], [payload, "raf-db", None, None, None]))
        time.sleep(rng.uniform(0.2, 1.0))


def _timed(tally: Tally, kind: str, call) -> dict:
    began = time.monotonic()
    try:
        message = call()
    except httpx.HTTPError as exc:
        message = {"success": False, "why": f"{type(exc).__name__}: {exc}"}
    why = message.get("why") or str((message.get("output") or {}).get("error"))
    tally.record(kind, began, bool(message.get("success")), why)
    return message


def _choices(views: dict) -> list[str]:
    for value in (views.get("output") or {}).get("data", []):
        if isinstance(value, dict) and value.get("choices"):
            return [c[1] if isinstance(c, (list, tuple)) else c for c in value["choices"]]
    return []


# --- the hostile client ----------------------------------------------------------------------------

def hostile(url: str, until: float, fns: dict[str, int], live: int, frame: str, seen: Counter) -> None:
    """One address: made-up sessions, floods, bombs, cache filling; counts what it got back."""
    address = "10.66.6.6"
    photo = Client(url, address).file("astronaut.png", photo_bytes())
    bombs = {
        "pickle bomb": (pickle.dumps(_Call(bytearray, 2**31), protocol=2), "tiny.pth", fns["_upload"]),
        "million-class head": (_million_class_head(), "arm.pth", fns["_upload"]),
        "bomb zip": (labeled_zip(4, bomb=True), "bomb.zip", fns["evaluate"]),
    }
    while time.monotonic() < until:
        fake = Client(url, address)  # a made-up session hash each round
        for _ in range(3):
            seen[f"flood join {fake.join(fns['analyze'], [photo, None]).status_code}"] += 1
        seen[f"frame {fake.frame(live, 'x' * 32, frame).get('status')}"] += 1
        name = random.choice(list(bombs))
        data, file_name, fn = bombs[name]
        uploaded = fake.upload(file_name, data)
        if uploaded.status_code != 200:
            seen[f"{name} upload {uploaded.status_code}"] += 1
            continue
        payload = {"path": uploaded.json()[0], "orig_name": file_name, "meta": {"_type": "gradio.FileData"}}
        args = [payload, None, None] if fn == fns["_upload"] else [payload, "raf-db", None, None, None]
        joined = fake.join(fn, args)
        seen[f"{name} join {joined.status_code}"] += 1
        seen[f"filler upload {fake.upload('filler.bin', secrets.token_bytes(8 * 2**20)).status_code}"] += 1
        time.sleep(0.05)


class _Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _million_class_head() -> bytes:
    import torch

    from poster.weights.deterministic import deterministic_state_dict

    state = deterministic_state_dict("arm", 7, torch.float32)
    features = state["fc.weight"].shape[1]
    state["fc.weight"] = torch.zeros(1).expand(1_000_000, features)
    state["fc.bias"] = torch.zeros(1).expand(1_000_000)
    buffer = io.BytesIO()
    torch.save({"model_state_dict": state}, buffer)
    return buffer.getvalue()


# --- the run ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="default: 10 (the hostile client starts halfway)")
    parser.add_argument("--visitors", type=int, default=16)
    parser.add_argument("--url", help="a running app (started with POSTER_TRUSTED_PROXY=1) instead of a new one")
    args = parser.parse_args(argv)

    proc, work = None, Path(tempfile.mkdtemp(prefix="poster-soak-"))
    try:
        if args.url:
            url, pid = args.url, None
        else:
            for arch in ("poster-v2", "arm"):
                deterministic_checkpoint(arch)
            env = dict(os.environ, POSTER_TRUSTED_PROXY="1",
                       POSTER_CHECKPOINT_DIR=str(deterministic_checkpoint("poster-v2").parent))
            proc, url = start_server(env, work / "server.log")
            pid = proc.pid
        fns, live, precision = events(url)
        frame = frame_url()
        warm = Client(url, "10.0.0.250")
        if not warm.run(fns["analyze"], [warm.file("astronaut.png", photo_bytes()), None]).get("success"):
            print("warm-up failed", file=sys.stderr)
            return 1
        rss_before = rss_bytes(pid)
        tally = Tally()
        seconds = args.minutes * 60
        until = tally.start + seconds
        hostile_at = seconds / 2
        extras = {0: "upload", 1: "evaluate"}
        threads = [threading.Thread(target=visitor,
                                    args=(url, n, until, tally, fns, live, frame, extras.get(n), precision))
                   for n in range(args.visitors)]
        for t in threads:
            t.start()
        seen: Counter = Counter()
        time.sleep(hostile_at)
        rss_mid = rss_bytes(pid)
        attacker = threading.Thread(target=hostile, args=(url, until, fns, live, frame, seen))
        attacker.start()
        for t in [*threads, attacker]:
            t.join()
        rss_after = rss_bytes(pid)
        before, n_before = tally.p95(0, hostile_at)
        after, n_after = tally.p95(hostile_at, seconds + 600)
        kinds = Counter(k for _, _, k in tally.done)
        print(f"{args.visitors} visitors, {args.minutes:g} min, hostile client from minute {hostile_at / 60:g}; "
              f"{os.cpu_count()} CPU cores (shared machine: latencies include other work)")
        print(f"honest requests: {len(tally.done)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})")
        print(f"honest failed requests: {len(tally.failures)}")
        for failure in Counter(tally.failures).most_common(5):
            print(f"  {failure[1]} x {failure[0]}")
        print(f"p95 latency of events (frames excluded): {before:.2f} s before ({n_before}), "
              f"{after:.2f} s after the hostile client started ({n_after})")
        print("hostile client got: " + ", ".join(f"{k} x{n}" for k, n in sorted(seen.items())))
        mb = lambda v: "n/a" if v is None else f"{v / 2**20:,.0f} MB"  # noqa: E731
        print(f"server memory (RSS): {mb(rss_before)} before, {mb(rss_mid)} when the hostile client started, "
              f"{mb(rss_after)} after")
        return 0 if not tally.failures else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except Exception:  # noqa: BLE001
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
