"""Every row of the GPU issue's table on whatever CUDA GPU is here, in at most about five minutes.

    python benchmarks/gpu.py OUT_DIR [--cap-s 40]

Sections run in turn, each stopped after ``--cap-s`` seconds of work (what it measured by then is
kept); after every section ``OUT_DIR/gpu.json`` and ``OUT_DIR/gpu.log`` are written again, so a run
cut short still leaves its figures. The deterministic weights (same shapes and cost as the released
ones) are used throughout. Without CUDA the script says so and exits 0.

It needs the project's requirements (requirements.txt). A machine that lacks some (the lent H200 has
no facenet-pytorch, captum or gradio) takes them as wheels; a section whose import fails records the
error and the others run. The training row is measured as the SAM step's ceiling only; the loop's
rate (its progress bar on a real set from the second epoch) and explanations
(``benchmarks/explain_speed.py``) are not measured here.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from _common import deterministic_checkpoint  # noqa: E402 - puts the repository on sys.path

import numpy as np
import torch


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
    torch.cuda.synchronize()
    times = []
    while len(times) < repeats and (budget.left() or len(times) < 3):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
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


def network_section(model, budget: Budget) -> dict:
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
            graphed = GraphedForward(model, name, batch_sizes=(1, 4))
            result[f"batch1_graphed_{name}_ms"] = cuda_ms(lambda: graphed(one), budget)
            three = torch.randn(3, 3, 224, 224, device=device)  # padded to the graph of 4
            with running_in(name, device):
                eager = model(three).float()
            result[f"graphed_{name}_max_difference_from_eager"] = float((graphed(three) - eager).abs().max())
        big = torch.randn(256, 3, 224, 224, device=device)
        weights_bf16 = copy.deepcopy(model).to(torch.bfloat16)
        candidates = {"float32": lambda: model(big), "bfloat16_weights": lambda: weights_bf16(big.bfloat16())}
        for name, fn in candidates.items():
            if budget.left():
                result[f"batch256_{name}_images_per_s"] = 256_000 / cuda_ms(fn, budget, repeats=10)
        if budget.left():
            with running_in("bfloat16", device):
                result["batch256_bfloat16_autocast_images_per_s"] = 256_000 / cuda_ms(lambda: model(big), budget, 10)
    return result


def live_section(checkpoint: Path, budget: Budget) -> dict:
    """The webcam's server path per frame (one and four faces), and 16 streams classified together."""
    from demo.live_tracking import LiveSession, process_frame
    from poster.data.sample_faces import sample_photos
    from poster.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device="cuda")

    class OneModelStore:  # the parts of demo.store.ModelStore that process_frame uses
        on_gpu = True

        def __init__(self, predictor):
            self.predictor = predictor

        def detector(self):
            return self.predictor.detector

        def try_predictor(self, key):
            return self.predictor, ""

        def using(self, key):
            import contextlib
            return contextlib.nullcontext()

    photo = np.ascontiguousarray(sample_photos()[0][:480, :480])
    four = np.ascontiguousarray(np.concatenate([np.concatenate([photo[::2, ::2]] * 2, 1)] * 2, 0))
    store = OneModelStore(predictor)
    result = {"engine": predictor.compile().state if predictor.compile() is not None else "eager"}
    for name, frame in (("one_face", photo), ("four_faces", four)):
        session, frames, start = LiveSession(), 0, time.perf_counter()
        while frames < 200 and (budget.left() or frames < 5):
            process_frame(frame, session, "bench", predictor.precision, store, alternate=False)
            frames += 1
        result[f"{name}_results_per_s"] = frames / (time.perf_counter() - start)
    crops = [f.crop.image for f in predictor.predict(photo)]
    if crops and budget.left():
        streams, calls_before = 16, predictor.batched_classify.batches
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
        result["streams16_classifications_per_s_each"] = min(per_stream) / seconds
        result["streams16_faces_per_batch"] = sum(per_stream) * len(crops) / max(
            1, predictor.batched_classify.batches - calls_before)
    return result


def evaluate_section(checkpoint: Path, budget: Budget, count: int = 3068) -> dict:
    """``evaluate`` over generated JPEGs (RAF-DB's test size), float32 and bfloat16."""
    from poster.data.datasets import ImageDataset, list_images
    from poster.data.sample_faces import write_imagefolder
    from poster.evaluation.run import default_workers, evaluate
    from poster.weights.checkpoints import load_checkpoint

    root = Path(tempfile.mkdtemp(prefix="gpu-bench-eval-"))
    names = [f"c{i}" for i in range(7)]
    write_imagefolder(root, [i % 7 for i in range(count)], names)
    result = {"images": count}
    for precision, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        if not budget.left():
            break
        model = load_checkpoint(checkpoint, device="cuda", dtype=dtype)
        dataset = ImageDataset(list_images(root, model.info.class_names, names), preprocessing=model.info.preprocessing)
        start = time.perf_counter()
        evaluate(model, dataset, batch_size=256, workers=default_workers(torch.device("cuda")), progress=False,
                 precision=precision)
        result[f"{precision}_seconds"] = time.perf_counter() - start
    return result


def train_step_section(budget: Budget) -> dict:
    """The SAM step's ceiling on a fixed batch of 144 (bfloat16 autocast): the rate the loop should reach."""
    from train_speed import images_per_second

    steps = 3
    result = {}
    while budget.left() and steps <= 24:
        result["sam_step_bfloat16_batch144_images_per_s"] = images_per_second(torch.device("cuda"), 144, steps,
                                                                               torch.bfloat16)
        steps *= 2
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for gpu.json and gpu.log")
    parser.add_argument("--cap-s", type=float, default=40.0, help="seconds of work per section (default: 40)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []
    report: dict = {"cuda": torch.cuda.is_available(), "torch": torch.__version__, "sections": {}}

    def save(line: str) -> None:
        log_lines.append(line)
        print(line, flush=True)
        (args.out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "gpu.log").write_text("\n".join(log_lines) + "\n")

    if not torch.cuda.is_available():
        save("no CUDA GPU here: nothing measured")
        return 0
    report["gpu"] = torch.cuda.get_device_name()
    save(f"{report['gpu']}, torch {torch.__version__}")

    from poster.weights.checkpoints import load_checkpoint

    checkpoint = deterministic_checkpoint()
    model = load_checkpoint(checkpoint, device="cuda")
    sections = {
        "precision": lambda b: precision_section(model, b),
        "network": lambda b: network_section(model, b),
        "live": lambda b: live_section(checkpoint, b),
        "evaluate": lambda b: evaluate_section(checkpoint, b),
        "train_step": train_step_section,
    }
    for name, section in sections.items():
        start = time.perf_counter()
        try:
            report["sections"][name] = section(Budget(args.cap_s))
        except Exception:  # noqa: BLE001 - one failing section leaves the others measured
            report["sections"][name] = {"error": traceback.format_exc(limit=3)}
        save(f"{name} ({time.perf_counter() - start:.0f} s): {json.dumps(report['sections'][name])}")
    save("not measured here: the training loop's rate from its second epoch (`python -m poster train` on a real "
         "set, its progress bar) and explanations (benchmarks/explain_speed.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
