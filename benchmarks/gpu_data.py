"""The data-pipeline sections of ``benchmarks/gpu.py`` (issue 23): ``evaluate`` as the command runs
it, and the training loop's second epoch against the SAM step's rate. Run through gpu.py."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from gpu import Budget, Sizes


def evaluate_section(checkpoint: Path, budget: Budget, sizes: Sizes) -> dict:
    """``evaluate`` over generated JPEGs (RAF-DB's test size) as the command runs it, float32 and bfloat16:
    model-and-data seconds (run.json's duration) and images/s; and, to tell who limits, the loader
    alone (decode, resize, pin, onto the device, normalize) and the network alone at the same batch."""
    from poster.data.datasets import ImageDataset, Pixels, list_images
    from poster.data.loading import default_workers, device_batch, image_loader
    from poster.data.sample_faces import write_imagefolder
    from poster.evaluation.protocol import default_batch
    from poster.evaluation.run import evaluate
    from poster.inference.accelerate import fast_copy
    from poster.inference.precision import running_in
    from poster.weights.checkpoints import load_checkpoint

    from gpu import cuda_ms, synchronize  # imported here: gpu.py imports this module

    root = Path(tempfile.mkdtemp(prefix="gpu-bench-eval-"))
    names = [f"c{i}" for i in range(7)]
    count = sizes.eval_images
    write_imagefolder(root, [i % 7 for i in range(count)], names)
    device = torch.device(sizes.device)
    batch = default_batch(device) if device.type == "cuda" else sizes.big_batch  # the command's; tiny in a smoke run
    workers = default_workers(device)
    result = {"images": count, "batch_size": batch, "workers": workers}
    loaded = load_checkpoint(checkpoint, device=sizes.device)
    listing = list_images(root, loaded.info.class_names, names)
    # The loader's pixels normalized on this device must be the CPU transform's values, bit for bit.
    check = ImageDataset(listing.limit(8))
    pixels = torch.stack([check.pixels(i)[0] for i in range(len(check))])
    on_device = device_batch(pixels, range(len(check)), device, torch.float32, check.preprocessing).cpu()
    result["device_normalize_equals_cpu_transform"] = torch.equal(
        on_device, torch.stack([check[i][0] for i in range(len(check))]))
    for precision, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        if precision != "float32" and not budget.left():
            break
        model = fast_copy(loaded, dtype)  # as `python -m poster evaluate` makes it
        # Warm-up on one batch: the first calls load kernels; a run's rate is what follows.
        start = time.perf_counter()
        evaluate(model, ImageDataset(listing.limit(batch)), batch_size=batch, progress=False, precision=precision)
        result[f"{precision}_first_batch_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        evaluate(model, ImageDataset(listing), batch_size=batch, workers=workers, progress=False, precision=precision)
        seconds = time.perf_counter() - start
        result[f"{precision}_seconds"] = seconds
        result[f"{precision}_images_per_s"] = count / seconds
        if budget.left():
            x = torch.randn(batch, 3, 224, 224, device=device).to(dtype, memory_format=torch.channels_last)
            with torch.inference_mode(), running_in(precision, device):
                result[f"{precision}_network_alone_images_per_s"] = 1000 * batch / cuda_ms(lambda m=model: m(x), budget, 10)
        del model
    if budget.left():
        dataset = ImageDataset(listing)
        start, seen = time.perf_counter(), 0
        for images, indices, errors in image_loader(Pixels(dataset), batch_size=batch, workers=workers, device=device):
            device_batch(images, dataset.record_failures(indices.tolist(), errors), device, torch.bfloat16,
                         dataset.preprocessing)
            seen += len(indices)
            if not budget.left():
                break
        synchronize()
        result["loader_alone_images_per_s"] = seen / (time.perf_counter() - start)
    return result


def train_loop_section(checkpoint: Path, budget: Budget, sizes: Sizes, step_rate: float | None) -> dict:
    """``run_training`` for two epochs on a generated set (bf16 autocast on a GPU, the command's defaults):
    the loop's rate from its second epoch against the bare SAM step's (``train_step``)."""
    from poster.data.sample_faces import write_imagefolder
    from poster.training.loop import run_training
    from poster.training.recipe import TrainConfig
    from poster.weights.registry import get_weights

    raf = get_weights(arch="poster-v2", dataset="raf-db")
    root = Path(tempfile.mkdtemp(prefix="gpu-bench-train-"))
    write_imagefolder(root, [i % 7 for i in range(sizes.train_images)], raf.folder_names, split_folder="train")
    write_imagefolder(root, [i % 7 for i in range(max(7, sizes.train_images // 5))], raf.folder_names,
                      split_folder="test")
    precision = "bf16" if sizes.device == "cuda" else "fp32"  # CPU autocast is far slower than float32
    config = TrainConfig.from_recipe("raf-db", root, root / "run", init=str(checkpoint), epochs=2,
                                     batch_size=sizes.train_batch, precision=precision, device=sizes.device,
                                     seed=0, progress=False, workers=sizes.train_workers)
    start = time.perf_counter()
    history = run_training(config).history
    result = {"train_images": sizes.train_images, "batch": sizes.train_batch, "workers": sizes.train_workers,
              "wall_s": time.perf_counter() - start,
              "epochs": [{k: h.get(k) for k in ("epoch", "images_per_second", "train_seconds", "test_seconds")}
                         for h in history]}
    if len(history) > 1 and step_rate:
        result["second_epoch_share_of_step_rate"] = history[1]["images_per_second"] / step_rate
    return result
