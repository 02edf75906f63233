"""Every row of the GPU issue's table on whatever CUDA GPU is here, in at most about five minutes.

    python benchmarks/gpu.py OUT_DIR [--cap-s 40] [--smoke]

Sections run in turn, each stopped after ``--cap-s`` seconds of work (what it measured by then is
kept); after every section ``OUT_DIR/gpu.json`` and ``OUT_DIR/gpu.log`` are written again, so a run
cut short still leaves its figures. The deterministic weights (same shapes and cost as the released
ones) are used throughout. Without CUDA the script says so and exits 0; ``--smoke`` then runs every
section on the CPU at tiny sizes instead (CUDA graphs left out), to catch mistakes before a GPU run.

It needs the project's requirements (requirements.txt). A machine that lacks some (the lent H200 has
no facenet-pytorch or gradio) takes them as wheels; a section whose import fails records the
error and the others run. The training rows are the SAM step's ceiling on a fixed batch and the
loop's rate in its second epoch on a generated set (two whole epochs: that section is not cut short).
The explanation row is one face's Grad-CAM on both streams, attention and rollout, as the app's
explanation panel asks for it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from _common import deterministic_checkpoint  # noqa: E402 - puts the repository on sys.path
from gpu_data import evaluate_section, train_loop_section  # noqa: E402

import numpy as np
import torch


@dataclass(frozen=True)
class Sizes:
    """The issue's sizes on a GPU; tiny ones for ``--smoke`` on the CPU."""

    device: str = "cuda"
    big_batch: int = 256
    eval_images: int = 3068
    streams: int = 16
    train_batch: int = 144
    train_images: int = 1440  # ten steps an epoch, as the measurement
    train_workers: int = 4
    frames: int = 200


SMOKE = Sizes(device="cpu", big_batch=2, eval_images=6, streams=2, train_batch=2, train_images=4, train_workers=1,
              frames=2)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Budget:
    """A section's time cap: ``left()`` says whether to measure one more thing."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> bool:
        return time.monotonic() < self.end


def cuda_ms(fn: Callable[[], object], budget: Budget, repeats: int = 30) -> float:
    """Median milliseconds of ``fn`` on the GPU (synchronised), as many repeats as the budget allows."""
    for _ in range(3):
        fn()
    synchronize()
    times = []
    while len(times) < repeats and (budget.left() or len(times) < 3):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))


def precision_section(model, budget: Budget) -> dict:
    """NaN/inf per format and the float32 logits' distance from ``exact`` (TF32 off)."""
    from poster.data.sample_faces import face_crops
    from poster.inference.precision import finite_logits, running_in
    from poster.inference.transforms import model_batch

    batch = model_batch([np.asarray(c) for c in face_crops()], model)
    result = {}
    with torch.inference_mode():
        with running_in("exact", batch.device):
            exact = model(batch).float()
        for name in ("float32", "bfloat16", "float16"):
            with running_in(name, batch.device):
                raw = model(batch).float()
            logits, used = finite_logits(model, batch, name, batch.device)
            result[name] = {"raw_finite": bool(torch.isfinite(raw).all()), "answered_in": used,
                            "max_logit_difference_from_exact": float((logits - exact).abs().max()),
                            "top_class_as_exact": float((logits.argmax(1) == exact.argmax(1)).float().mean())}
    return result


def network_section(model, budget: Budget, sizes: Sizes) -> dict:
    """Batch 1 eager against CUDA graphs (bfloat16 and float32); batch 256 throughput per format."""
    import copy

    from poster.inference.graphed import GraphedForward
    from poster.inference.precision import running_in

    device = next(model.parameters()).device
    one = torch.randn(1, 3, 224, 224, device=device)
    result = {}
    with torch.inference_mode():
        for name in ("bfloat16", "float32"):
            with running_in(name, device):
                result[f"batch1_eager_{name}_ms"] = cuda_ms(lambda: model(one), budget)
            if device.type != "cuda":
                continue
            graphed = GraphedForward(model, name, batch_sizes=(1, 4))
            result[f"batch1_graphed_{name}_ms"] = cuda_ms(lambda: graphed(one), budget)
            three = torch.randn(3, 3, 224, 224, device=device)  # padded to the graph of 4
            with running_in(name, device):
                eager = model(three).float()
            result[f"graphed_{name}_max_difference_from_eager"] = float((graphed(three) - eager).abs().max())
        n = sizes.big_batch
        big = torch.randn(n, 3, 224, 224, device=device)
        weights_bf16 = copy.deepcopy(model).to(torch.bfloat16)
        candidates = {"float32": lambda: model(big), "bfloat16_weights": lambda: weights_bf16(big.bfloat16())}
        for name, fn in candidates.items():
            if budget.left():
                result[f"batch{n}_{name}_images_per_s"] = 1000 * n / cuda_ms(fn, budget, repeats=10)
        if budget.left():
            with running_in("bfloat16", device):
                result[f"batch{n}_bfloat16_autocast_images_per_s"] = 1000 * n / cuda_ms(lambda: model(big), budget, 10)
    return result


def live_section(checkpoint: Path, budget: Budget, sizes: Sizes) -> dict:
    """The webcam's server path per frame (one and four faces), and 16 streams classified together."""
    from demo.webcam.live_tracking import LiveSession, process_frame
    from poster.data.sample_faces import sample_photos
    from poster.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device=sizes.device)

    class OneModelStore:  # the parts of demo.serving.store.ModelStore that process_frame uses
        on_gpu = sizes.device == "cuda"

        def __init__(self, predictor):
            self.predictor = predictor

        def detector(self):
            return self.predictor.detector

        def try_predictor(self, key):
            return self.predictor, ""

        def variant(self, key, precision=None, *, accelerated=False):
            return self.predictor  # one model, measured in its own precision

        def using(self, key):
            import contextlib
            return contextlib.nullcontext()

    photo = np.ascontiguousarray(sample_photos()[0][:480, :480])
    four = np.ascontiguousarray(np.concatenate([np.concatenate([photo[::2, ::2]] * 2, 1)] * 2, 0))
    store = OneModelStore(predictor)
    engine = predictor.accelerate() if sizes.device == "cuda" else None
    result = {"engine": engine.state if engine is not None else "eager"}
    for name, frame in (("one_face", photo), ("four_faces", four)):
        session, frames, start = LiveSession(), 0, time.perf_counter()
        while frames < sizes.frames and (budget.left() or frames < 2):
            process_frame(frame, session, "bench", predictor.precision, store, alternate=False)
            frames += 1
        result[f"{name}_results_per_s"] = frames / (time.perf_counter() - start)
    crops = [f.crop.image for f in predictor.predict(photo)]
    if crops and budget.left():
        streams, calls_before = sizes.streams, predictor.batched_classify.batches
        per_stream = [0] * streams
        stop = time.monotonic() + min(10.0, max(1.0, budget.end - time.monotonic()))

        def visitor(i: int) -> None:
            while time.monotonic() < stop:
                predictor.batched_classify(crops)
                per_stream[i] += 1

        start = time.perf_counter()
        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(visitor, range(streams)))
        seconds = time.perf_counter() - start
        result[f"streams{streams}_classifications_per_s_each"] = min(per_stream) / seconds
        result[f"streams{streams}_faces_per_batch"] = sum(per_stream) * len(crops) / max(
            1, predictor.batched_classify.batches - calls_before)
    return result


def train_step_section(budget: Budget, sizes: Sizes) -> dict:
    """The SAM step's ceiling on a fixed batch of 144 (bfloat16 autocast): the rate the loop should reach."""
    from train_speed import images_per_second

    steps, result = 3, {}
    while budget.left() and steps <= 24:
        result[f"sam_step_bfloat16_batch{sizes.train_batch}_images_per_s"] = images_per_second(
            torch.device(sizes.device), sizes.train_batch, steps, torch.bfloat16)
        steps *= 2
    return result


def _step_rate(report: dict, sizes: Sizes) -> float | None:
    """The SAM step's ceiling measured by the train_step section (its longest run), if it ran."""
    rates = report["sections"].get("train_step", {})
    return rates.get(f"sam_step_bfloat16_batch{sizes.train_batch}_images_per_s")


def explain_section(model, budget: Budget) -> dict:
    """Milliseconds per face of a whole explanation (one forward and one backward pass, every map
    copied to the host), for one face and for a batch of eight."""
    from explain import Explainer
    from poster.data.sample_faces import face_crops
    from poster.inference.transforms import model_batch

    explainer = Explainer(model)
    crops = [np.asarray(c) for c in face_crops()]
    result = {}
    for count in (1, 8):
        batch = model_batch((crops * 8)[:count], model)
        result[f"ms_per_face_batch{count}"] = cuda_ms(lambda: explainer.explain(batch), budget, repeats=20) / count
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for gpu.json and gpu.log")
    parser.add_argument("--cap-s", type=float, default=40.0, help="seconds of work per section (default: 40)")
    parser.add_argument("--smoke", action="store_true", help="without CUDA: every section on the CPU at tiny sizes")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []
    report: dict = {"cuda": torch.cuda.is_available(), "torch": torch.__version__, "sections": {}}

    def save(line: str) -> None:
        log_lines.append(line)
        print(line, flush=True)
        (args.out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "gpu.log").write_text("\n".join(log_lines) + "\n")

    if torch.cuda.is_available():
        sizes = Sizes()
        report["gpu"] = torch.cuda.get_device_name()
    elif args.smoke:
        sizes, report["gpu"] = SMOKE, "none (smoke run on the CPU, tiny sizes)"
    else:
        save("no CUDA GPU here: nothing measured")
        return 0
    save(f"{report['gpu']}, torch {torch.__version__}")

    from poster.weights.checkpoints import load_checkpoint

    checkpoint = deterministic_checkpoint("poster-v2")
    model = load_checkpoint(checkpoint, device=sizes.device)
    sections = {
        "precision": lambda b: precision_section(model, b),
        "network": lambda b: network_section(model, b, sizes),
        "live": lambda b: live_section(checkpoint, b, sizes),
        "evaluate": lambda b: evaluate_section(checkpoint, b, sizes),
        "train_step": lambda b: train_step_section(b, sizes),
        "train_loop": lambda b: train_loop_section(checkpoint, b, sizes, _step_rate(report, sizes)),
        "explain": lambda b: explain_section(model, b),
    }
    for name, section in sections.items():
        start = time.perf_counter()
        try:
            report["sections"][name] = section(Budget(args.cap_s))
        except Exception:  # noqa: BLE001 - one failing section leaves the others measured
            report["sections"][name] = {"error": traceback.format_exc(limit=3)}
        save(f"{name} ({time.perf_counter() - start:.0f} s): {json.dumps(report['sections'][name])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
