"""What a visitor waits for with each architecture: the Photo tab's analysis of the astronaut, the
explanation of its face, and *Compare* over all three, through the app's own handlers on CPU.

    python benchmarks/app_architectures.py [--repeats 5]

Checkpoints are built from the test recipe (same shapes and cost as the released files).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common  # noqa: F401  (puts the project on the path)
import torch
from _common import astronaut_path, time_interleaved

from demo.photo.compare_panel import compare_checkpoints
from demo.ui.explain_panel import PREDICTED, explain_subject
from demo.photo.tab import analyze_photo
from demo.serving.store import ModelStore
from poster.weights.deterministic import write_arm_checkpoint, write_poster_v1_checkpoint
from poster.weights.deterministic import write_poster_v2_checkpoint

KEYS = {"POSTER++": "raf-db", "POSTER": "poster-v1-raf-db", "ARM": "arm-raf-db"}


def checkpoint_folder() -> Path:
    """The three architectures' recipe checkpoints, laid out as the download command does."""
    root = Path(tempfile.gettempdir()) / "poster-bench" / "all-architectures"
    files = {root / "rafdb_best.pth": lambda p: write_poster_v2_checkpoint(p, 7),
             root / "poster-v1" / "rafdb_best.pth": write_poster_v1_checkpoint,
             root / "arm" / "epoch59_acc0.9205.pth": write_arm_checkpoint}
    for path, write in files.items():
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    store = ModelStore(device="cpu", checkpoint_dirs=[checkpoint_folder()])
    photo = str(astronaut_path())
    subjects = {}
    for name, key in KEYS.items():
        subjects[name] = analyze_photo(photo, key, store=store).subject
    analyze = {f"analyze {n}": (lambda k=k: analyze_photo(photo, k, store=store)) for n, k in KEYS.items()}
    explain = {f"explain {n}": (lambda s=s: explain_subject(s, PREDICTED, store=store))
               for n, s in subjects.items()}
    print(f"threads {torch.get_num_threads()}, median of {args.repeats} (ms), timed in turn")
    for group in (analyze, explain):
        for label, ms in time_interleaved(group, repeats=args.repeats, warmup=1).items():
            print(f"  {label:<20} {ms:8.1f}")
    compare = time_interleaved({"compare all three": lambda: compare_checkpoints(subjects["POSTER++"], store=store)},
                               repeats=max(1, args.repeats // 2), warmup=1)
    for label, ms in compare.items():
        print(f"  {label:<20} {ms:8.1f}")


if __name__ == "__main__":
    main()
