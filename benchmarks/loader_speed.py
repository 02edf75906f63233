"""Images per second of the evaluation's data loader alone (decode, resize, collate, pin), no model.

    python benchmarks/loader_speed.py [--images 640] [--workers 0 1 2] [--batch-size 32] [--threads 1]

Two ways to feed a model: ``float`` is what evaluation's loader carried until issue 23 (normalized
float32 tensors, and a copy of the loaded rows in the main process each batch); ``pixels`` is what
it carries now (uint8 pixels, normalized on the device by ``poster.data.loading.device_batch``,
included here on this machine's CPU or GPU). The images are generated 100x100 JPEGs (RAF-DB's size).
Per worker, a rate tells how many loader processes a GPU's rate needs.
"""
from __future__ import annotations

import argparse
import math
import resource
import tempfile
import time
from pathlib import Path

import torch
from _common import machine  # also puts the project on sys.path

from poster.data.datasets import ImageDataset, Pixels, list_images  # noqa: E402
from poster.data.loading import device_batch, image_loader  # noqa: E402
from poster.data.sample_faces import write_imagefolder  # noqa: E402
from poster.models.poster_v2 import PosterV2Weights  # noqa: E402


def rate(dataset: ImageDataset, mode: str, workers: int, batch_size: int, device: torch.device,
         rounds: int = 2) -> tuple[float, float, float]:
    """(best images per second over ``rounds`` passes, CPU ms per image in the main process, in
    the workers). CPU time is what a shared machine's neighbours change least."""
    source = Pixels(dataset) if mode == "pixels" else dataset
    best, main_ms, worker_ms = 0.0, math.inf, math.inf
    for _ in range(rounds):
        start, count = time.perf_counter(), 0
        cpu, children = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        for images, indices, errors in image_loader(source, batch_size=batch_size, workers=workers, device=device):
            loaded = dataset.record_failures(indices.tolist(), errors)
            if mode == "pixels":
                device_batch(images, loaded, device, torch.float32, dataset.preprocessing)
            else:  # the former main-process work: a copy of the loaded rows, then the transfer
                images[loaded].to(device, torch.float32, non_blocking=True, memory_format=torch.channels_last)
            count += len(indices)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = max(best, count / (time.perf_counter() - start))
        main_ms = min(main_ms, 1000 * (time.process_time() - cpu) / count)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers have exited and been joined
        used = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        worker_ms = min(worker_ms, 1000 * used / count)
    return best, main_ms, worker_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in the main process (default 1: on a busy machine more threads "
                             "spin against the workers)")
    parser.add_argument("--mode", nargs="+", choices=("float", "pixels"), default=["float", "pixels"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    raf = PosterV2Weights.RAF_DB.value
    print(f"{machine()}; {args.images} JPEGs of 100x100, batch {args.batch_size}, batches to {device}")
    with tempfile.TemporaryDirectory() as folder:
        write_imagefolder(Path(folder), [i % raf.num_classes for i in range(args.images)], raf.folder_names)
        dataset = ImageDataset(list_images(folder, raf.class_names, raf.folder_names))
        for workers in args.workers:
            for mode in args.mode:
                images_per_s, main_ms, worker_ms = rate(dataset, mode, workers, args.batch_size, device)
                print(f"{mode:6s} {workers:2d} workers: {images_per_s:6.0f} img/s; CPU per image: "
                      f"{main_ms:5.2f} ms main process, {worker_ms:5.2f} ms workers "
                      f"(one idle core each: {1000 / max(worker_ms, 1e-9):4.0f} img/s per worker)"
                      if workers else f"{mode:6s}  0 workers: {images_per_s:6.0f} img/s; CPU per image: "
                      f"{main_ms:5.2f} ms", flush=True)


if __name__ == "__main__":
    main()
