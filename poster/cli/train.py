"""`python -m poster train`: train or fine-tune POSTER++ with the published recipe.

    python -m poster train --data DIR --dataset raf-db
    torchrun --nproc_per_node 4 -m poster train --data DIR --dataset affectnet-7
    python -m poster train --data DIR --dataset raf-db --init affectnet-7 --epochs 20
    python -m poster train --resume runs/train/raf-db-20250101-120000

Recipe options default to the dataset's published values (shown by ``--help`` as "recipe").
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..data.layouts import LAYOUTS
from ..devices import pick_device
from ..errors import PosterError
from .. import distributed
from ..training.loop import run_training
from ..training.recipe import PRECISIONS, RECIPES, TrainConfig, resume_config
from ..weights.registry import DATASET_KEYS


DEFAULT_RUNS = Path("runs") / "train"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to train on")
    what.add_argument("--data", type=Path, metavar="DIR",
                      help="dataset folder (train/ and test/ class folders, or a RAF-DB release)")
    what.add_argument("--dataset", choices=tuple(RECIPES), help="whose recipe and classes to use")
    what.add_argument("--test-data", type=Path, metavar="DIR",
                      help="a separate test set (e.g. a second CSV); default: the test split of --data")
    what.add_argument("--layout", choices=("auto", *LAYOUTS), default=None, help="default: auto")
    what.add_argument("--classes", metavar="A,B,...",
                      help="your own class names in order (class folders named like them); default: the dataset's")
    where = parser.add_argument_group("where to write")
    where.add_argument("--out", type=Path, metavar="RUN_DIR",
                       help=f"run folder (default: {DEFAULT_RUNS}/<dataset>-<date>-<time>)")
    where.add_argument("--resume", type=Path, metavar="RUN_DIR",
                       help="continue an interrupted run after its last finished epoch")
    start = parser.add_argument_group("where to start")
    start.add_argument("--ir50", default="ir50", metavar="SRC",
                       help="pretrained IR-50 file or name ('none': random weights; default: %(default)s)")
    start.add_argument("--mobilefacenet", default="mobilefacenet", metavar="SRC",
                       help="pretrained MobileFaceNet file or name ('none': random; default: %(default)s)")
    start.add_argument("--init", metavar="SRC",
                       help="fine-tune from a dataset checkpoint (file or name); another class list "
                            "gets a new head")
    start.add_argument("--init-dataset", choices=DATASET_KEYS, metavar="NAME",
                       help=f"the dataset --init was trained on, for its class order ({', '.join(DATASET_KEYS)}); "
                            "default: inferred from the file, its name or its class count, and reported")
    recipe = parser.add_argument_group("recipe (defaults: the dataset's published values)")
    recipe.add_argument("--epochs", type=int, metavar="N", help="recipe: 200")
    recipe.add_argument("--batch-size", type=int, metavar="N", help="global batch, split over processes; recipe: 144")
    recipe.add_argument("--lr", type=float, help="recipe: 3.5e-5 RAF-DB, 1e-6 AffectNet, 4e-5 CAER-S")
    recipe.add_argument("--gamma", type=float, metavar="G", help="learning-rate decay per epoch; recipe: 0.98")
    recipe.add_argument("--rho", type=float, metavar="R", help="SAM neighbourhood radius; recipe: 0.05")
    recipe.add_argument("--weight-decay", type=float, metavar="WD", help="Adam weight decay; recipe: 0")
    recipe.add_argument("--flip-p", type=float, metavar="P", help="horizontal flip probability; recipe: 0.5")
    recipe.add_argument("--erase-p", type=float, metavar="P", help="random erasing probability; recipe: 0.5 RAF-DB, 1 others")
    recipe.add_argument("--erase-scale", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="erased area fraction; recipe: 0.02 0.1 RAF-DB, 0.05 0.05 others")
    recipe.add_argument("--balanced", action=argparse.BooleanOptionalAction, default=None,
                        help="class-balanced sampling; recipe: on for AffectNet")
    run = parser.add_argument_group("how to run")
    run.add_argument("--workers", type=int, metavar="N", help="loader processes per training process (default: 4)")
    run.add_argument("--seed", type=int, metavar="N", help="seed for repeatable runs (default: a random one, logged)")
    run.add_argument("--precision", choices=PRECISIONS, help="auto (default): bf16 on GPUs that have it, else fp32")
    run.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    run.add_argument("--eval-batch-size", type=int, metavar="N", help="test-split batch per process (default: 64)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, bool]:
    """The run's settings and whether it resumes."""
    runtime = {
        "data": str(args.data) if args.data else None,
        "test_data": str(args.test_data) if args.test_data else None,
        "epochs": args.epochs, "workers": args.workers, "device": args.device, "precision": args.precision, "eval_batch_size": args.eval_batch_size,
        "progress": False if args.no_progress else None,
    }
    if args.resume:
        if args.out and args.out != args.resume:
            raise PosterError("--resume continues in its own folder; leave out --out")
        defining = {
            "dataset": args.dataset, "layout": args.layout, "classes": _classes(args.classes),
            "init": args.init, "init_dataset": args.init_dataset, "batch_size": args.batch_size, "lr": args.lr, "gamma": args.gamma,
            "rho": args.rho, "weight_decay": args.weight_decay, "flip_p": args.flip_p, "erase_p": args.erase_p,
            "erase_scale": tuple(args.erase_scale) if args.erase_scale else None, "balanced": args.balanced,
            "seed": args.seed,
        }
        return resume_config(args.resume, runtime | defining), True
    if args.data is None or args.dataset is None:
        raise PosterError("--data and --dataset are needed (or --resume RUN_DIR)")
    out = args.out or DEFAULT_RUNS / f"{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    settings = {k: v for k, v in runtime.items() if v is not None and k != "data"}  # None: the default
    config = TrainConfig.from_recipe(
        args.dataset, args.data, out, layout=args.layout or "auto", classes=_classes(args.classes),
        init=args.init, init_dataset=args.init_dataset, ir50=_source(args.ir50), mobilefacenet=_source(args.mobilefacenet), seed=args.seed,
        batch_size=args.batch_size, lr=args.lr, gamma=args.gamma, rho=args.rho, weight_decay=args.weight_decay,
        flip_p=args.flip_p, erase_p=args.erase_p,
        erase_scale=tuple(args.erase_scale) if args.erase_scale else None, balanced=args.balanced, **settings)
    return config, False


def _classes(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if len(names) < 2 or len(set(names)) != len(names):
        raise PosterError(f"--classes needs two or more distinct names, got {text!r}")
    return names


def _source(value: str | None) -> str | None:
    return None if value is None or value.lower() == "none" else value


def run(args: argparse.Namespace) -> int:
    config, resume = config_from_args(args)
    info = distributed.setup(pick_device(config.device).type)
    try:
        result = run_training(config, resume=resume, info=info)
    finally:
        distributed.teardown()
    if info.is_main:
        print(f"wrote {result.run_dir}", file=sys.stderr)
    return 0
