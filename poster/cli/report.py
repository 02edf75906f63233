"""`python -m poster report RUN`: one run's summary, with the checks a reproduction needs."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..evaluation.report import run_report
from ..evaluation.run_files import read_run


def describe(report: dict[str, Any]) -> str:
    """The report as a few lines for the terminal."""
    low, high = report["accuracy_ci"]
    published = report["published_accuracy"]
    versus = "" if published is None else (
        f"; published {published:.2f} % ({'inside' if report['published_within_ci'] else 'outside'} the interval)")
    lines = [f"accuracy {report['accuracy']:.2f} % (95 % CI {low:.2f}-{high:.2f}) on {report['num_images']} images{versus}",
             f"mean class accuracy {report['mean_class_accuracy']:.2f} % (95 % CI "
             f"{report['mean_class_accuracy_ci'][0]:.2f}-{report['mean_class_accuracy_ci'][1]:.2f}), "
             f"macro F1 {report['macro_f1']:.2f} %"]
    if report["top_confusions"]:
        lines.append("top confusions: " + ", ".join(
            f"{c['true']} -> {c['predicted']} {c['count']} ({c['share']:.0%})" for c in report["top_confusions"]))
    suspects = report["suspected_label_errors"]
    lines.append(f"suspected label errors: {suspects['count']}"
                 + "".join(f"\n  {s['path']}: labeled {s['label']}, looks like {s['predicted']}" for s in suspects["top"]))
    order = report["label_order"]
    if order["suspected"]:
        moved = ", ".join(f"{a} -> {b}" for a, b in order["mapping"].items() if a != b)
        lines.append(f"class order looks wrong: relabeling {moved} would give "
                     f"{order['accuracy_if_remapped']:.2f} % accuracy; check the class folders' order")
    else:
        lines.append("class order: no relabeling explains the run better")
    return "\n".join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN", help="run folder written by evaluate")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    info, table = read_run(args.run_dir)
    report = run_report(table, info["class_names"], info.get("published_accuracy"))
    report = {"run": str(args.run_dir), "checkpoint": info.get("checkpoint")} | report
    print(json.dumps(report, indent=2) if args.json else describe(report))
    return 0
