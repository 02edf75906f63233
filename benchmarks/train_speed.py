"""POSTER++ training speed in images per second: full SAM steps (two forward and backward passes).

    python benchmarks/train_speed.py [--cpu-batch 4] [--gpu-batch 144] [--steps 5] [--threads N]

On the CPU always; on a GPU, when there is one, in float32, bfloat16 autocast and float16 autocast
with a GradScaler. Data loading is left out (a fixed random batch), so these are the model's
ceilings; the progress bar of a real run shows what the loader lets through.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from poster.models import PosterV2  # noqa: E402
from poster.training.recipe import TrainConfig  # noqa: E402
from poster.training.step import make_optimizer, sam_step  # noqa: E402


def images_per_second(device: torch.device, batch: int, steps: int, amp: torch.dtype | None) -> float:
    """Images per second over ``steps`` SAM steps, after one warm-up step."""
    torch.manual_seed(0)
    model = PosterV2(7).to(device).train()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    optimizer, _ = make_optimizer(model, TrainConfig.from_recipe("raf-db", "-", "-"))
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    images = torch.randn(batch, 3, 224, 224, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 7, (batch,), device=device)

    def step() -> None:
        sam_step(model, optimizer, images, labels, amp=amp, scaler=scaler)

    step()  # warm-up: allocations, cuDNN algorithm search
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-batch", type=int, default=4)
    parser.add_argument("--gpu-batch", type=int, default=144, help="the recipe's batch (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    parser.add_argument("--no-cpu", action="store_true", help="GPU figures only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}; one SAM step = 2 forward + 2 backward passes")
    if not args.no_cpu:
        rate = images_per_second(torch.device("cpu"), args.cpu_batch, args.steps, None)
        print(f"cpu  fp32 ({torch.get_num_threads()} threads, batch {args.cpu_batch}): {rate:8.2f} img/s")
    if not torch.cuda.is_available():
        print("no GPU: GPU figures skipped")
        return
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    for label, amp in (("fp32", None), ("bf16 autocast", torch.bfloat16), ("fp16 autocast + scaler", torch.float16)):
        if amp == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            continue
        rate = images_per_second(device, args.gpu_batch, args.steps, amp)
        print(f"{name} {label} (batch {args.gpu_batch}): {rate:8.1f} img/s")
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
