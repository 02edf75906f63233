"""`python -m poster compare RUN_A RUN_B`: two runs on the images they share, with the statistics."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import PosterError
from ..evaluation.compare import BOOTSTRAP_SAMPLES, Comparison, compare_tables
from ..evaluation.run_files import read_run


def describe(c: Comparison, name_a: str = "A", name_b: str = "B") -> str:
    """The comparison as a few lines for the terminal."""
    def acc(value: float, ci: tuple[float, float]) -> str:
        return f"{value:.2f} % (95 % CI {ci[0]:.2f}-{ci[1]:.2f})"

    lines = [f"compared on the {c.n} images they share"
             + (f" ({c.only_in_a} only in A, {c.only_in_b} only in B)" if c.only_in_a or c.only_in_b else "")
             + (f"; {c.label_mismatches} shared images labeled differently were left out" if c.label_mismatches else ""),
             f"A {name_a}: accuracy {acc(c.accuracy_a, c.accuracy_a_ci)}",
             f"B {name_b}: accuracy {acc(c.accuracy_b, c.accuracy_b_ci)}",
             f"A - B: {c.difference:+.2f} points (paired bootstrap 95 % CI {c.difference_ci[0]:+.2f} to "
             f"{c.difference_ci[1]:+.2f}); McNemar exact p = {c.mcnemar_p:.3g}",
             f"both right {c.both_correct} · only A right {c.only_a} · only B right {c.only_b} · "
             f"both wrong {c.both_wrong}",
             "per class (accuracy A, B, difference):"]
    lines += [f"  {p['class']:<12} n={p['n']:<5} {p['accuracy_a']:6.2f} {p['accuracy_b']:6.2f} "
              f"{p['difference']:+7.2f}" for p in c.per_class]
    return "\n".join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="run folder written by evaluate")
    parser.add_argument("run_b", type=Path, metavar="RUN_B", help="the other run folder")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument("--samples", type=int, default=BOOTSTRAP_SAMPLES, help="bootstrap resamples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    info_a, table_a = read_run(args.run_a)
    info_b, table_b = read_run(args.run_b)
    comparison = compare_tables(table_a, table_b, samples=max(1, args.samples), seed=args.seed)
    if comparison.n == 0:
        raise PosterError(f"{args.run_a} and {args.run_b} share no images (matched by path)")
    if args.json:
        print(json.dumps(comparison.to_dict() | {"run_a": str(args.run_a), "run_b": str(args.run_b)}, indent=2))
    else:
        print(describe(comparison, f"{args.run_a} ({info_a.get('checkpoint', '?')})",
                       f"{args.run_b} ({info_b.get('checkpoint', '?')})"))
    return 0
