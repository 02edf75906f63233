"""How often the webcam's bfloat16 model keeps the float32 top class, on real face crops.

    python benchmarks/bf16_agreement.py [--crops 96] [--checkpoint PATH]

Crops are aligned faces of the two test photos (scikit-image's astronaut, matplotlib's Grace
Hopper) under the changes a webcam brings: small shifts, turns, zoom, light and noise, plus the
eight face crops the tests use. Without ``--checkpoint`` the deterministic-weights checkpoint is used:
its weights are not trained, so its classes are close calls more often than a trained model's.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image, ImageEnhance

from _common import deterministic_checkpoint, machine
from poster import load_checkpoint
from poster.data.sample_faces import face_crops, sample_photos
from poster.inference.faces import FaceDetector, align_face
from poster.inference.transforms import to_batch


def webcam_like(photo: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """The photo moved, turned, zoomed, lit and grained a little, as consecutive webcam frames differ."""
    image = Image.fromarray(photo)
    w, h = image.size
    zoom = rng.uniform(0.9, 1.1)
    image = image.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BILINEAR,
                         translate=(rng.uniform(-12, 12), rng.uniform(-12, 12)))
    image = image.resize((round(w * zoom), round(h * zoom)), Image.Resampling.BILINEAR)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.2))
    array = np.asarray(image).astype(np.float32) + rng.normal(0, rng.uniform(0, 6), (image.size[1], image.size[0], 3))
    return np.clip(array, 0, 255).astype(np.uint8)


def crops(count: int) -> list[np.ndarray]:
    detector = FaceDetector()
    rng = np.random.RandomState(0)
    out = [np.asarray(Image.fromarray(c).resize((224, 224), Image.Resampling.BILINEAR)) for c in face_crops()]
    sources = sample_photos()
    while len(out) < count:
        frame = webcam_like(sources[len(out) % len(sources)], rng)
        faces = detector.detect(frame).faces
        if faces:
            out.append(align_face(frame, faces[0]).image)
    return out[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=96)
    parser.add_argument("--checkpoint", default=None, help="a checkpoint file or registry name (default: deterministic weights)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    source = args.checkpoint or deterministic_checkpoint("poster-v2")
    exact = load_checkpoint(source)
    fast = load_checkpoint(source, dtype=torch.bfloat16)
    images = crops(args.crops)
    full, low = [], []
    with torch.inference_mode():
        for i in range(0, len(images), args.batch_size):
            batch = to_batch(images[i:i + args.batch_size])
            full.append(torch.softmax(exact(batch).float(), 1))
            low.append(torch.softmax(fast(batch).float(), 1))
    full_p, low_p = torch.cat(full), torch.cat(low)
    same = full_p.argmax(1) == low_p.argmax(1)
    top2 = full_p.topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]) * 100
    print(f"CPU: {machine()}; checkpoint {getattr(source, 'name', source)}; {len(images)} real face crops")
    print(f"bfloat16 keeps the float32 top class on {int(same.sum())}/{len(same)} crops "
          f"({100 * same.float().mean():.1f} %); largest probability change {100 * (low_p - full_p).abs().max():.2f} points")
    if (~same).any():
        print(f"where it changes, float32's top two classes were {margin[~same].max():.2f} points apart at most "
              f"(median over all crops {margin.median():.2f} points)")
    close = margin >= 1.0
    if close.any():
        print(f"on crops whose float32 top two differ by at least 1 point: "
              f"{100 * same[close].float().mean():.1f} % kept ({int(close.sum())} crops)")


if __name__ == "__main__":
    main()
