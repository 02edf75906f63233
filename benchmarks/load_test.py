"""Load test of the app's photo endpoint: N concurrent clients on loopback for a bounded time.

    python benchmarks/load_test.py [--clients 1 4 16] [--seconds 20] [--recipe | --url URL]

Starts the app (``demo.build_demo``) in a child process on 127.0.0.1, unless ``--url`` points at
a running one. Each client is its own ``gradio_client.Client`` that sends the astronaut photo to
``/analyze`` again and again until time is up. For every N it prints requests per second, p50 /
p95 latency, the error count (must be 0) and the server's resident memory before and after.

``--recipe`` serves a checkpoint with deterministic weights (untrained, same cost as a real
one) from a temporary folder, for machines without the released weights; otherwise the app finds
checkpoints as usual (checkpoints/, POSTER_CHECKPOINT_DIR, POSTER_HUB_REPO).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from demo import free_port  # noqa: E402

SERVER = """
import sys
sys.path.insert(0, {root!r})
from demo import build_demo, launch_kwargs
from demo.serving.store import ModelStore
store = ModelStore()
build_demo(store).launch(server_name="127.0.0.1", server_port={port}, quiet=True, **launch_kwargs(store))
"""


@dataclass
class Level:
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    rss_before: int | None = None
    rss_after: int | None = None

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def rss_bytes(pid: int | None) -> int | None:
    """Resident memory of a process and its children (Linux /proc; None elsewhere)."""
    if pid is None:
        return None
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total or None


def _children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = [int(k) for k in kids]
    for k in list(out):
        out += _children(k)
    return out


def start_server(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-c", SERVER.format(root=str(ROOT), port=port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with code {proc.returncode}; see {log_path}")
        try:
            urllib.request.urlopen(url, timeout=2).read(100)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the app did not start within 180 s; see {log_path}")


def photo_path() -> str:
    import skimage.data

    return str(Path(skimage.data.__file__).parent / "astronaut.png")


def run_level(url: str, clients: int, seconds: float, pid: int | None) -> Level:
    from gradio_client import Client, handle_file

    level = Level(clients, seconds, rss_before=rss_bytes(pid))
    photo = photo_path()
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    go = threading.Event()
    stop_at = [0.0]

    def worker() -> None:
        client = Client(url, verbose=False)
        ready.wait()
        go.wait()
        while True:
            start = time.perf_counter()
            try:
                result = client.predict(handle_file(photo), api_name="/analyze")
                faces = result[4]
                if len(faces) != 1 or not faces[0].get("label"):
                    raise RuntimeError(f"unexpected answer: {faces!r}"[:200])
            except Exception as exc:  # noqa: BLE001 - every failure counts as an error
                with lock:
                    level.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            else:
                with lock:
                    level.latencies.append(time.perf_counter() - start)
            if time.perf_counter() >= stop_at[0]:
                break

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    ready.wait()  # every client connected: the clock starts now
    began = time.perf_counter()
    stop_at[0] = began + seconds
    go.set()
    for t in threads:
        t.join()
    level.wall = time.perf_counter() - began  # includes finishing the requests under way at the end
    level.rss_after = rss_bytes(pid)
    return level


def mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MB"


def report(levels: list[Level]) -> str:
    head = f"{'N':>3} {'requests':>9} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'errors':>6} {'RSS before':>11} {'RSS after':>10}"
    lines = [head, "-" * len(head)]
    for lv in levels:
        lines.append(f"{lv.clients:>3} {lv.requests:>9} {lv.requests / lv.wall:>7.2f} {lv.percentile(0.5):>7.2f} "
                     f"{lv.percentile(0.95):>7.2f} {len(lv.errors):>6} {mb(lv.rss_before):>11} {mb(lv.rss_after):>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="default: 1 4 16")
    parser.add_argument("--seconds", type=float, default=20.0, help="per level (default: 20)")
    parser.add_argument("--url", help="a running app to test instead of starting one")
    parser.add_argument("--recipe", action="store_true", help="serve a checkpoint with the deterministic weights from a temporary folder")
    args = parser.parse_args(argv)

    proc = None
    work = Path(tempfile.mkdtemp(prefix="poster-load-"))
    try:
        if args.url:
            url, pid = args.url, None
        else:
            env = dict(os.environ)
            if args.recipe:
                from poster.weights.deterministic import write_poster_v2_checkpoint

                write_poster_v2_checkpoint(work / "rafdb_best.pth")
                env["POSTER_CHECKPOINT_DIR"] = str(work)
            proc, url = start_server(env, work / "server.log")
            pid = proc.pid
        print(f"app at {url}; warming up", file=sys.stderr)
        warm = run_level(url, 1, 0.0, pid)  # one request: loads the model
        if warm.errors:
            print(f"warm-up failed: {warm.errors[0]}", file=sys.stderr)
            return 1
        import torch

        print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'} · {os.cpu_count()} CPU cores · "
              f"{args.seconds:g} s per level", file=sys.stderr)
        levels = []
        for n in args.clients:
            print(f"N={n} ...", file=sys.stderr)
            levels.append(run_level(url, n, args.seconds, pid))
        print(report(levels))
        for lv in levels:
            for error in lv.errors[:3]:
                print(f"N={lv.clients} error: {error}")
        return 1 if any(lv.errors for lv in levels) else 0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
