"""`python -m poster predict IMAGE... [--checkpoint SRC] [--json] [--annotate DIR]`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import PosterError
from ..inference.draw import draw_predictions
from ..inference.images import load_image
from ..inference.precision import PRECISIONS
from ..weights.locate import default_checkpoint
from ..weights.registry import ARCHITECTURES, DATASET_KEYS, list_weights


def add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
    """``--dataset`` and ``--arch``: what a checkpoint file does not say about itself."""
    parser.add_argument("--dataset", choices=DATASET_KEYS, metavar="NAME",
                        help=f"the dataset the checkpoint was trained on, for its class order ({', '.join(DATASET_KEYS)}); "
                             "default: inferred where the file, its name or its class count tells it")
    parser.add_argument("--arch", choices=tuple(ARCHITECTURES), metavar="ARCH",
                        help=f"the architecture ({', '.join(ARCHITECTURES)}); default: told by the file's keys")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--checkpoint", default=None,
                        help=f"checkpoint file or name ({', '.join(w.key for w in list_weights())}); "
                             "default: $POSTER_CHECKPOINT or raf-db")
    add_checkpoint_flags(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument("--annotate", metavar="DIR", help="write each image with boxes and labels into DIR")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    parser.add_argument("--flip-tta", action="store_true", help="average each face with its mirror image")
    parser.add_argument("--max-faces", type=int, default=20, help="largest faces kept per image")
    parser.add_argument("--dtype", choices=PRECISIONS, default=None,
                        help="default: bfloat16 on GPUs that run it natively, else float32; float16 faces that "
                             "overflow are redone in float32; exact is float32 without TF32 on GPUs")


def run(args: argparse.Namespace) -> int:
    from ..weights.checkpoints import describe_dataset
    from ..inference.faces import DetectorConfig
    from ..inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(args.checkpoint or default_checkpoint(), device=args.device,
                                          detector_config=DetectorConfig(max_faces=args.max_faces),
                                          tta_flip=args.flip_tta, dataset=args.dataset, arch=args.arch,
                                          precision=args.dtype)
    info = predictor.model.info
    if info.dataset_reason != "given":
        print(describe_dataset(info), file=sys.stderr)
    out_dir = Path(args.annotate) if args.annotate else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    report, failed = [], 0
    for name in args.images:
        try:
            image = load_image(name)
            faces = predictor.predict(image)
        except PosterError as exc:
            failed += 1
            report.append({"image": name, "error": str(exc)})
            if not args.json:
                print(f"{name}: error: {exc}", file=sys.stderr)
            continue
        entry = {"image": name, "faces": [f.to_dict() for f in faces], "faces_left_out": faces.dropped}
        if out_dir:
            target = out_dir / (Path(name).stem + "_annotated.png")
            from PIL import Image

            Image.fromarray(draw_predictions(image, faces)).save(target)
            entry["annotated"] = str(target)
        report.append(entry)
        if not args.json:
            print(_table(name, faces, predictor.class_names))
    if args.json:
        doc = {"checkpoint": info.name, "arch": info.arch, "dataset": info.dataset, "dtype": predictor.precision,
               "dataset_reason": info.dataset_reason, "classes": list(predictor.class_names), "images": report}
        print(json.dumps(doc, indent=2))
    return 1 if failed else 0


def _table(name: str, faces, class_names: tuple[str, ...]) -> str:
    if not faces:
        return f"{name}: no face found\n"
    short = [c[:9] for c in class_names]
    lines = [f"{name}: {len(faces)} face(s)" + (f", {faces.dropped} more left out" if faces.dropped else "")]
    lines.append(f"  {'#':>2} {'box (x1,y1,x2,y2)':<24} {'label':<10} " + " ".join(f"{s:>9}" for s in short))
    for i, f in enumerate(faces, 1):
        box = ",".join(f"{v:.0f}" for v in f.box)
        probs = " ".join(f"{p:>9.1%}" for p in f.probabilities)
        lines.append(f"  {i:>2} {box:<24} {f.label:<10} {probs}")
    return "\n".join(lines) + "\n"
