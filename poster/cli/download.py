"""`python -m poster download raf-db ir50 ...`: released weight files into a folder, verified."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import DownloadError
from ..weights import locate
from ..weights.download import OfflineError, default_dir, download, downloadable
from ..models.weights_api import Weights
from ..weights.registry import ARCHITECTURES, list_weights
from ..weights.sources import ENV_URL_TEMPLATE, SOURCE_CHOICES, manual_route


def configure_parser(parser: argparse.ArgumentParser) -> None:
    keys = ", ".join(w.key for w in list_weights(kind=None))
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"what to download: {keys}")
    parser.add_argument("--all", action="store_true", help="every file above")
    parser.add_argument("--dir", type=Path, help=f"target folder (default: the first folder of "
                                                  f"{locate.ENV_DIR}, else {locate.DEFAULT_DIR}/)")
    parser.add_argument("--source", choices=SOURCE_CHOICES, default="auto",
                        help="auto (default): a configured mirror or Hub repository first, then Google Drive")
    parser.add_argument("--hub-repo", help=f"Hugging Face Hub repository holding the files under their "
                                           f"registry names (default: ${locate.ENV_HUB_REPO})")
    parser.add_argument("--url-template", help="a mirror, e.g. https://host/poster/{file_name} "
                                               f"(default: ${ENV_URL_TEMPLATE})")
    parser.add_argument("--force", action="store_true", help="download again even if a verified file is there")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or status lines")


def run(args: argparse.Namespace) -> int:
    names = [w.key for w in list_weights(kind=None)] if args.all else list(args.names)
    dest = args.dir or default_dir()
    if not names:
        print(_listing(dest))
        return 2
    wanted = [downloadable(name) for name in names]  # unknown names fail before anything is fetched
    say = (lambda _message: None) if args.quiet else (lambda message: print(message, file=sys.stderr))
    failed: list[Weights] = []
    for i, weights in enumerate(wanted):
        try:
            print(download(weights.key, dest, args.source, hub_repo=args.hub_repo, url_template=args.url_template,
                           status=say, quiet=args.quiet, force=args.force))
        except OfflineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            print(manual_route(failed + wanted[i:], dest), file=sys.stderr)
            return 1
        except DownloadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed.append(weights)
    if failed:
        print(manual_route(failed, dest), file=sys.stderr)
        return 1
    if Path(dest).resolve() not in {d.resolve() for d in locate.search_dirs()}:
        print(f"note: the loader does not look in {dest}/; set {locate.ENV_DIR}={dest} to use these files",
              file=sys.stderr)
    return 0


def _listing(dest: Path) -> str:
    lines = ["weight files (pass names or --all):"]
    groups = {spec.title: list_weights(arch) for arch, spec in ARCHITECTURES.items()}
    groups["pretrained backbones"] = list_weights(kind="backbone")
    for title, files in groups.items():
        lines.append(f" {title}:")
        for w in files:
            found = locate.find_local(w, [dest])
            where = f"found: {found}" if found else "not downloaded"
            accuracy = f" {w.published_accuracy:.2f}%" if w.published_accuracy else ""
            lines.append(f"  {w.key:<17} {locate.relative_path(w):<32} {w.title}{accuracy}  [{where}]")
    return "\n".join(lines)
