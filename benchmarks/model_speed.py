"""Network speed: ms per image on the CPU (batch 1 and 8), images/s on a GPU (batch 64).

For each architecture (POSTER++, POSTER, ARM) compares the original forward pass
(benchmarks/original_forward.py, original_poster_v1.py, original_arm.py; same weights) with this
project's float32 path and its bfloat16 fast mode, timed in turn in one process, and measures
what the fast mode costs in accuracy on real face crops.

    python benchmarks/model_speed.py [--arch all|poster-v2|poster-v1|arm] [--repeats 20] [--skip-accuracy]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from _common import deterministic_checkpoint, machine, time_interleaved, time_ms
from original_forward import original_forward, plain_copy
from poster import load_checkpoint

TITLES = {"poster-v2": "POSTER++", "poster-v1": "POSTER", "arm": "ARM"}


def seed_models(arch: str):
    """(original forward, baseline model, fp32 model, bf16 model) for POSTER or ARM."""
    path = deterministic_checkpoint(arch)
    if arch == "poster-v1":
        import original_poster_v1 as original

        baseline = original.original_model(load_checkpoint(path, channels_last=False))
    else:
        import original_arm as original

        baseline = plain_copy(load_checkpoint(path))
    return original.original_forward, baseline, load_checkpoint(path), load_checkpoint(path, dtype=torch.bfloat16)


def speed_table(title: str, original, baseline, fp32, bf16, repeats: int) -> None:
    rows = []
    for batch in (1, 8):
        x = torch.randn(batch, 3, 224, 224)
        n = repeats if batch == 1 else max(5, repeats // 4)
        with torch.inference_mode():
            torch.testing.assert_close(fp32(x), original(baseline, x), rtol=0, atol=1e-3)
            times = time_interleaved({"original": lambda: original(baseline, x),
                                      "fp32": lambda: fp32(x), "bf16": lambda: bf16(x)}, n)
        rows.append((batch, *(times[k] / batch for k in ("original", "fp32", "bf16"))))
    label = f"{title} fp32"
    print(f"\n{'batch':>5} {'original fp32':>14} {label:>14} {'speed-up':>8} {'bf16 fast':>10} {'speed-up':>8}")
    for batch, t_orig, t_fp32, t_bf16 in rows:
        print(f"{batch:>5} {t_orig:>11.1f} ms {t_fp32:>11.1f} ms {t_orig / t_fp32:>7.2f}x {t_bf16:>7.1f} ms "
              f"{t_orig / t_bf16:>7.2f}x   (ms per image)")


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
    args = parser.parse_args()
    print(f"CPU: {machine()}")
    for arch in ("poster-v1", "arm"):
        if args.arch in ("all", arch):
            print(f"\n{TITLES[arch]}")
            speed_table(TITLES[arch], *seed_models(arch), args.repeats)
    if args.arch not in ("all", "poster-v2"):
        return
    print("\nPOSTER++")
    path = deterministic_checkpoint()

    baseline = plain_copy(load_checkpoint(path))
    fp32 = load_checkpoint(path)
    bf16 = load_checkpoint(path, dtype=torch.bfloat16)
    rows = []
    for batch in (1, 8):
        x = torch.randn(batch, 3, 224, 224)
        repeats = args.repeats if batch == 1 else max(5, args.repeats // 4)
        with torch.inference_mode():
            torch.testing.assert_close(fp32(x), original_forward(baseline, x), rtol=0, atol=1e-3)
            times = time_interleaved({"original": lambda: original_forward(baseline, x),
                                      "fp32": lambda: fp32(x), "bf16": lambda: bf16(x)}, repeats)
        rows.append((batch, *(times[k] / batch for k in ("original", "fp32", "bf16"))))
    print(f"\n{'batch':>5} {'original fp32':>14} {'POSTER++ fp32':>14} {'speed-up':>8} {'bf16 fast':>10} {'speed-up':>8}")
    for batch, t_orig, t_fp32, t_bf16 in rows:
        print(f"{batch:>5} {t_orig:>11.1f} ms {t_fp32:>11.1f} ms {t_orig / t_fp32:>7.2f}x {t_bf16:>7.1f} ms "
              f"{t_orig / t_bf16:>7.2f}x   (ms per image)")

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
    baseline = plain_copy(load_checkpoint(path, device=device))
    model = load_checkpoint(path, device=device)
    sync = torch.cuda.synchronize
    with torch.inference_mode():
        t_orig = time_ms(lambda: original_forward(baseline, x), 20, sync=sync)
        t_fp32 = time_ms(lambda: model(x), 20, sync=sync)
        with torch.autocast("cuda", dtype=torch.float16):
            t_amp = time_ms(lambda: model(x), 20, sync=sync)
        bf16 = load_checkpoint(path, device=device, dtype=torch.bfloat16)
        t_bf16 = time_ms(lambda: bf16(x), 20, sync=sync)
    for name, t in (("original fp32", t_orig), ("POSTER++ fp32", t_fp32), ("fp16 autocast", t_amp),
                    ("bf16 weights", t_bf16)):
        print(f"  {name:<14} {64000 / t:>8.0f} images/s")


if __name__ == "__main__":
    main()
