"""Network speed: ms per image on the CPU (batch 1 and 8), images/s on a GPU (batch 64).

For each architecture (POSTER++, POSTER, ARM) compares the original forward pass
(benchmarks/original_forward.py, original_poster_v1.py, original_arm.py; same weights) with what
the public API classifies with: ``fast_copy(load_checkpoint(...), dtype)`` (the model of
``Predictor.from_checkpoint(..., dtype=...)``) in float32 and bfloat16, timed in turn in one
process, and measures what the fast mode costs in accuracy on real face crops.

    python benchmarks/model_speed.py [--arch all|poster-v2|poster-v1|arm] [--repeats 20] [--skip-accuracy]
                                     [--no-compile] [--batches 1 8]

With a C++ compiler the compiled columns join the table in both formats, one face at a time: the
ahead-of-time package (``python -m poster accelerate``, built in a child process; its build and
load times are printed) and, for comparison, the earlier design compiled in this process
(``torch.compile`` with frozen weights and Inductor's C++ wrapper). Each build takes a minute or two.
For those it also prints how long one face's call keeps Python's lock from the process's other threads.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import deterministic_checkpoint, gemm_peak_gflops, machine, time_interleaved, time_ms
from original_forward import original_forward
from poster import load_checkpoint
from poster.inference.accelerate import AcceleratedForward, fast_copy
from poster.inference.artifacts import artifact_path, has_cpp_compiler

TITLES = {"poster-v2": "POSTER++", "poster-v1": "POSTER", "arm": "ARM"}


def models(arch: str):
    """(original forward, baseline model, fp32 model, bf16 model) on the same deterministic weights."""
    path = deterministic_checkpoint(arch)
    plain = load_checkpoint(path)
    if arch == "poster-v1":
        import original_poster_v1 as original

        forward, baseline = original.original_forward, original.original_model(load_checkpoint(path, channels_last=False))
    elif arch == "arm":
        import original_arm as original

        forward, baseline = original.original_forward, plain
    else:
        forward, baseline = original_forward, plain
    return forward, baseline, fast_copy(plain), fast_copy(plain, torch.bfloat16)


def ahead_of_time(model, dtype: torch.dtype, folder: Path) -> AcceleratedForward | None:
    """The package of ``model`` in ``dtype``, built by the command in a child process, then loaded."""
    path = artifact_path(model, dtype, "cpu", folder)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "poster", "accelerate", model.info.source, "--dtype",
                           str(dtype).removeprefix("torch."), "--out", str(path)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])  # where ``poster`` imports from
    built = time.perf_counter() - start
    if done.returncode != 0:
        print(f"  package {dtype}: build failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    start = time.perf_counter()
    forward = AcceleratedForward(model, build=False, directory=folder)
    forward.wait()  # it loads in a thread of its own
    print(f"  package {str(dtype).removeprefix('torch.')}: built in {built:.0f} s (child process), "
          f"loaded and run once in {(time.perf_counter() - start) * 1000:.0f} ms, {path.stat().st_size / 2**20:.0f} MB")
    return forward if forward.state == "compiled" else None


def compiled_in_process(model, dtype: torch.dtype):
    """The earlier design, for comparison: ``torch.compile`` of the plain model in this process
    (frozen weights, Inductor's C++ wrapper), one face at a time."""
    import torch._inductor.config as inductor_config

    plain = load_checkpoint(model.info.source, dtype=dtype, channels_last=False)  # as the package is built
    one = plain.forward_alone
    compiled = torch.compile(one, fullgraph=True, dynamic=False)
    start = time.perf_counter()
    with inductor_config.patch(freezing=True, cpp_wrapper=True), torch.inference_mode():
        compiled(torch.zeros(1, 3, 224, 224, dtype=dtype))
    print(f"  torch.compile {str(dtype).removeprefix('torch.')}: {time.perf_counter() - start:.0f} s in this process")

    def forward(x):
        return torch.cat([compiled(x[i:i + 1].contiguous()) for i in range(x.shape[0])])
    return forward


def compiled_models(fp32, bf16) -> dict:
    """Both formats both ways, each built before it is timed."""
    out = {}
    folder = Path(tempfile.mkdtemp(prefix="poster-packages-"))
    for tag, model, dtype in (("fp32", fp32, torch.float32), ("bf16", bf16, torch.bfloat16)):
        package = ahead_of_time(model, dtype, folder)
        if package is not None:
            out[f"package {tag}"] = package
        out[f"compile {tag}"] = compiled_in_process(model, dtype)
    return out


def speed_table(title: str, original, baseline, fp32, bf16, repeats: int, compile_too: bool,
                batches: tuple[int, ...] = (1, 8)) -> None:
    compiled = compiled_models(fp32, bf16) if compile_too else {}
    inputs = {"bf16": torch.bfloat16, "package bf16": torch.bfloat16, "compile bf16": torch.bfloat16}
    rows = []
    for batch in batches:
        x = torch.randn(batch, 3, 224, 224)
        xb = x.bfloat16()
        n = repeats if batch == 1 else max(5, repeats // 4)
        with torch.inference_mode():
            torch.testing.assert_close(fp32(x), original(baseline, x), rtol=0, atol=1e-3)
            candidates = {"original": lambda: original(baseline, x), "fp32": lambda: fp32(x), "bf16": lambda: bf16(xb)}
            for name, forward in compiled.items():
                if name.endswith("fp32"):  # one face at a time: ARM's faces alone, as the app classifies them
                    alone = fp32.forward_alone(x)
                    torch.testing.assert_close(forward(x), alone, rtol=0, atol=1e-3)
                candidates[name] = (lambda f=forward, v=(xb if name in inputs else x): f(v))
            times = time_interleaved(candidates, n)
        rows.append((batch, {k: t / batch for k, t in times.items()}))
    names = list(rows[0][1])
    print(f"\n{'batch':>5} " + " ".join(f"{(title + ' ' + n if n == 'fp32' else n):>22}" for n in names) + "   (ms per image; x: speed-up over the original)")
    for batch, times in rows:
        cells = [f"{times['original']:>19.1f} ms"] + [f"{times[n]:>9.1f} ms {times['original'] / times[n]:>8.2f}x"
                                                     for n in names[1:]]
        print(f"{batch:>5} " + " ".join(f"{c:>22}" for c in cells))
    ceiling(baseline, rows[0][1])
    if compiled:
        one = torch.randn(1, 3, 224, 224)
        pauses = {name: longest_pause(lambda f=forward, v=(one.bfloat16() if name in inputs else one): f(v))
                  for name, forward in {"fp32": fp32, **compiled}.items()}
        print("      longest pause of another Python thread while one face runs: "
              + ", ".join(f"{name} {ms:.0f} ms" for name, ms in pauses.items()))


def longest_pause(forward, calls: int = 5) -> float:
    """The longest time in ms a thread that wakes every 2 ms waited while ``forward`` ran ``calls``
    times: how long a call keeps Python's lock from the server's other threads."""
    import threading

    gaps, running = [0.0], True

    def tick() -> None:
        last = time.perf_counter()
        while running:
            time.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    with torch.inference_mode():
        for _ in range(calls):
            forward()
    running = False
    ticker.join()
    return max(gaps) * 1000


def ceiling(model, times: dict[str, float]) -> None:
    """How close the float32 copy runs to this machine's arithmetic limit, and so the most any exact
    float32 speed-up over the original could reach here (same arithmetic, faster kernels only)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, 3, 224, 224))
    gflop, peak = counter.get_total_flops() / 1e9, gemm_peak_gflops()
    floor_ms = gflop / peak * 1000
    print(f"      {gflop:.2f} GFLOP per image; fp32 runs at {gflop / times['fp32'] * 1000:.0f} GFLOP/s, this "
          f"machine's float32 matrix product at {peak:.0f} GFLOP/s: at that rate an image takes {floor_ms:.1f} ms, "
          f"at most {times['original'] / floor_ms:.2f}x over the original")


def face_crops(count: int = 240) -> torch.Tensor:
    """Real face crops: the two sample photos' faces under flips, shifts, rotations, colour changes."""
    from PIL import Image, ImageEnhance

    from poster.data.sample_faces import sample_photos
    from poster.inference.faces import FaceDetector, align_face
    from poster.inference.transforms import to_batch

    photos = sample_photos()
    detector = FaceDetector()
    rng = np.random.RandomState(0)
    crops = []
    while len(crops) < count:
        photo = photos[len(crops) % 2]
        img = Image.fromarray(photo).rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
        img = ImageEnhance.Color(img).enhance(rng.uniform(0.5, 1.5))
        img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.7, 1.3))
        arr = np.asarray(img)
        faces = detector.detect(arr).faces
        if not faces:
            continue
        crop = align_face(arr, faces[0], margin=rng.uniform(0.0, 0.3)).image
        if rng.rand() < 0.5:
            crop = crop[:, ::-1]
        crops.append(np.ascontiguousarray(crop))
    return to_batch(crops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--arch", choices=("all", *TITLES), default="all")
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled columns")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes to time")
    args = parser.parse_args()
    print(f"CPU: {machine()}")
    compile_too = not args.no_compile and has_cpp_compiler()
    if not compile_too:
        print("compiled columns skipped (--no-compile or no C++ compiler)")
    for arch in ("poster-v1", "arm", "poster-v2"):
        if args.arch in ("all", arch):
            print(f"\n{TITLES[arch]}")
            loaded = models(arch)
            speed_table(TITLES[arch], *loaded, args.repeats, compile_too, tuple(args.batches))
    if args.arch not in ("all", "poster-v2"):
        return
    path = deterministic_checkpoint("poster-v2")
    fp32, bf16 = loaded[2:]  # POSTER++, timed last

    if not args.skip_accuracy:
        crops = face_crops()
        with torch.inference_mode():
            full = torch.cat([fp32(c) for c in crops.split(16)])
            fast = torch.cat([bf16(c).float() for c in crops.split(16)])
        agree = (full.argmax(1) == fast.argmax(1)).float().mean().item()
        print(f"\nbf16 vs fp32 on {len(crops)} real face crops (deterministic weights): "
              f"max |logit diff| {(full - fast).abs().max():.4f} (logit range {full.min():.2f}..{full.max():.2f}), "
              f"top-1 agreement {agree:.1%}")

    if torch.cuda.is_available():
        gpu_bench(path)
    else:
        print("\nno GPU: GPU figures skipped")


def gpu_bench(path) -> None:
    device = torch.device("cuda")
    print(f"\nGPU: {torch.cuda.get_device_name(0)}, batch 64")
    x = torch.randn(64, 3, 224, 224, device=device)
    baseline = load_checkpoint(path, device=device)
    model = fast_copy(baseline)
    sync = torch.cuda.synchronize
    with torch.inference_mode():
        t_orig = time_ms(lambda: original_forward(baseline, x), 20, sync=sync)
        t_fp32 = time_ms(lambda: model(x), 20, sync=sync)
        with torch.autocast("cuda", dtype=torch.float16):
            t_amp = time_ms(lambda: model(x), 20, sync=sync)
        bf16 = fast_copy(baseline, torch.bfloat16)
        t_bf16 = time_ms(lambda: bf16(x), 20, sync=sync)
    for name, t in (("original fp32", t_orig), ("POSTER++ fp32", t_fp32), ("fp16 autocast", t_amp),
                    ("bf16 weights", t_bf16)):
        print(f"  {name:<14} {64000 / t:>8.0f} images/s")


if __name__ == "__main__":
    main()
