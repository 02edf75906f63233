"""Results per second of the live webcam in a real browser: Chromium with a fake camera, same machine.

    python benchmarks/webcam_browser.py [--seconds 15] [--precision bfloat16 float32] [--device cpu|cuda]
                                        [--no-compile] [--build-window 120]

The app is served on 127.0.0.1 with the reference-recipe checkpoint; Chromium plays a 640x480 video
of a real face photo as its camera. After a warm-up, the page's own counters give the rate, the
latency of each result (frame captured to result drawn), the time-averaged age of the shown result
and the server's time per frame (detection and classification steps apart). Each format is measured
with the eager model, then (on a CPU with a C++ compiler) again once the live model's compiled
package (built ahead of time in a separate process) answers; while that package is built, what the
visitor sees is printed every 10 s (rate, average and oldest age of the shown result), as on a
fresh server's first visit.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _common import deterministic_checkpoint
from _common import machine
from demo import served_on_loopback
from poster.inference.accelerate import ENV_ACCELERATE
from poster.inference.artifacts import has_cpp_compiler

CHROMIUM = "/usr/bin/chromium"
LIVE = "#webcam-live .poster-live"


def write_y4m(path: Path, image: np.ndarray, size: tuple[int, int] = (640, 480), frames: int = 5) -> Path:
    y, cb, cr = Image.fromarray(image).resize(size).convert("YCbCr").split()
    half = (size[0] // 2, size[1] // 2)
    frame = b"FRAME\n" + y.tobytes() + cb.resize(half).tobytes() + cr.resize(half).tobytes()
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{size[0]} H{size[1]} F30:1 Ip A1:1 C420jpeg\n".encode())
        out.write(frame * frames)
    return path


def camera_photo() -> np.ndarray:
    """The astronaut's upper body filling a 4:3 frame, as a person sits before a webcam."""
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).crop((56, 0, 456, 300)))


def measure(page, seconds: float) -> dict:
    before = page.evaluate(f"() => document.querySelector('{LIVE}').posterStats.results")
    time.sleep(seconds)
    stats = page.evaluate(f"() => document.querySelector('{LIVE}').posterStats")
    n = stats["results"] - before
    arrivals = stats["arrivals"][-n:]
    latencies = [v for v in stats["latencies"][-n:] if v is not None]
    gaps = np.diff(arrivals)
    # The shown result ages from its latency at arrival until the next one replaces it.
    age = float(np.sum((np.array(latencies[:-1]) + gaps / 2) * gaps) / np.sum(gaps)) if len(gaps) else float("nan")
    oldest = float(np.max(np.array(latencies[:-1]) + gaps)) if len(gaps) else float("nan")
    server = {step: [ms for ms, s in zip(stats["serverMs"][-n:], stats["steps"][-n:]) if s == step and ms is not None]
              for step in ("detect", "classify")}
    return {"rate": (n - 1) / ((arrivals[-1] - arrivals[0]) / 1000) if n > 1 else 0.0,
            "latency": statistics.median(latencies), "latency_p90": float(np.percentile(latencies, 90)),
            "age": age, "oldest": oldest, "server": {k: statistics.median(v) for k, v in server.items() if v},
            "server_all": statistics.median([v for vs in server.values() for v in vs])}


def while_built(page, window: float, step: float = 10.0) -> None:
    """What the first visitor sees while the live model's package is built beside the server: the
    rate, the average and the oldest age of the shown result, ``step`` seconds at a time, over the
    first ``window`` seconds or until the package answers."""
    started = time.monotonic()
    while time.monotonic() - started < window:
        r = measure(page, step)
        state = page.locator(f"{LIVE} .poster-live-rate").inner_text()
        print(f"    {time.monotonic() - started:>5.0f} s: {r['rate']:.1f} results/s · shown-result age {r['age']:.0f} ms "
              f"on average, oldest {r['oldest']:.0f} ms · {state}")
        if "compiled" in state:
            break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=6.0)
    parser.add_argument("--precision", nargs="+", default=None, help="formats to measure (default: those offered)")
    parser.add_argument("--device", default=None, help="the model store's device (default: CUDA when present)")
    parser.add_argument("--no-compile", action="store_true", help="measure the eager model only")
    parser.add_argument("--build-window", type=float, default=120.0,
                        help="seconds to watch the results while the package is built (default: two minutes)")
    args = parser.parse_args()

    from playwright.sync_api import expect, sync_playwright

    from demo.webcam import precision as precisions
    from demo.serving.store import ModelStore

    # A folder of its own, so the package is built during the run as on a fresh server, not found.
    os.environ.setdefault("POSTER_ACCELERATED_DIR", tempfile.mkdtemp(prefix="poster-packages-"))
    # One camera session watches the whole build (a visitor's session ends after 2 minutes on a CPU).
    os.environ.setdefault("POSTER_WEBCAM_SECONDS", "3600")
    store = ModelStore(device=args.device, checkpoint_dirs=[deterministic_checkpoint("poster-v2").parent])
    store.predictor("raf-db")
    formats = args.precision or precisions.choices(store.on_gpu)
    engines = ["eager"] + (["compiled"] if has_cpp_compiler() and not store.on_gpu and not args.no_compile else [])
    camera = write_y4m(Path(tempfile.mkdtemp()) / "face.y4m", camera_photo())
    load = os.getloadavg()[0]
    print(f"CPU: {machine()}; model on {store.device}; load average before: {load:.2f}; "
          f"Chromium on this machine, fake 640x480 camera; {args.seconds:g} s per format after {args.warmup:g} s")
    with served_on_loopback(store) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera}"])
        page = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["camera"]).new_page()
        page.set_default_timeout(120_000)
        page.goto(url, wait_until="load")
        page.get_by_role("tab", name="Webcam").click()
        for fmt in formats:
            page.locator("#webcam-precision label", has_text=fmt).click()
            for engine in engines:
                # The live model's package is built (in a child process) or loaded on the first
                # frame streamed while packages are allowed.
                os.environ[ENV_ACCELERATE] = "1" if engine == "compiled" else "0"
                page.locator(f"{LIVE} .poster-live-start").click()
                expect(page.locator(f"{LIVE} .poster-live-rate")).to_contain_text("results/s", timeout=120_000)
                if engine == "compiled":
                    while_built(page, args.build_window)
                    expect(page.locator(f"{LIVE} .poster-live-rate")).to_contain_text("compiled", timeout=600_000)
                time.sleep(args.warmup)
                r = measure(page, args.seconds)
                steps = ", ".join(f"{k} {v:.0f} ms" for k, v in r["server"].items())
                print(f"{fmt:>9} {engine:>8}: {r['rate']:.1f} results/s · latency median {r['latency']:.0f} ms (p90 "
                      f"{r['latency_p90']:.0f}) · shown-result age {r['age']:.0f} ms on average, oldest {r['oldest']:.0f} ms · server per frame "
                      f"{r['server_all']:.0f} ms ({steps})")
                page.locator(f"{LIVE} .poster-live-stop").click()
                time.sleep(1)
        browser.close()


if __name__ == "__main__":
    main()
