"""Labeled sets uploaded as a ``.zip``: checked entry by entry, unpacked into their own folder.

Nothing in an archive decides where a byte is written: every entry is checked first (paths that
climb out or are absolute, links, nested archives, encrypted entries, files that are neither
images nor label files, counts and sizes against the caps, compression ratios of zip bombs), and
only then copied, by this module, to a path it built inside the target folder. Sizes are counted
while copying too, as an archive's own size fields may lie. Each refusal is one line.
"""
from __future__ import annotations

import os
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from poster.data.layouts import IMAGE_SUFFIXES
from poster.errors import PosterError

LABEL_SUFFIXES = {".csv", ".txt"}
ARCHIVE_SUFFIXES = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".lz", ".lzma", ".cab"}
# What archivers add on their own; left out silently.
_IGNORED_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}
_IGNORED_FOLDERS = {"__macosx"}
_SPLIT_NAMES = {"test", "valid", "val", "train"}
RATIO_CHECKED_ABOVE = 1 << 20  # small files may compress well without being a bomb
_CHUNK = 1 << 16
MAX_NAME_BYTES = 255  # the longest file or folder name most file systems take
NAME_CHARS = 120  # an entry name is quoted at most this long in a message


class ArchiveError(PosterError):
    """An uploaded archive that is refused as a whole; the message is one line."""


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class ArchiveCaps:
    """Limits on an uploaded labeled set, each settable by an environment variable."""

    max_archive_bytes: int = 200 << 20
    max_files: int = 10_000
    max_unpacked_bytes: int = 1 << 30
    max_pixels: int = 16_000_000  # per image
    max_ratio: float = 200.0  # uncompressed / compressed size of an entry and of the whole archive

    ENV = {"max_archive_bytes": "POSTER_EVAL_MAX_ARCHIVE_MB", "max_files": "POSTER_EVAL_MAX_FILES",
           "max_unpacked_bytes": "POSTER_EVAL_MAX_UNPACKED_MB", "max_pixels": "POSTER_EVAL_MAX_PIXELS",
           "max_ratio": "POSTER_EVAL_MAX_RATIO"}

    @classmethod
    def from_env(cls) -> ArchiveCaps:
        d = cls()
        return cls(
            max_archive_bytes=int(_env_number(cls.ENV["max_archive_bytes"], d.max_archive_bytes / 2**20) * 2**20),
            max_files=int(_env_number(cls.ENV["max_files"], d.max_files)),
            max_unpacked_bytes=int(_env_number(cls.ENV["max_unpacked_bytes"], d.max_unpacked_bytes / 2**20) * 2**20),
            max_pixels=int(_env_number(cls.ENV["max_pixels"], d.max_pixels)),
            max_ratio=_env_number(cls.ENV["max_ratio"], d.max_ratio))

    def describe(self) -> str:
        """The caps in one line, with the variables that change them."""
        return (f"archive up to {_mb(self.max_archive_bytes)} ({self.ENV['max_archive_bytes']}), "
                f"{self.max_files:,} files ({self.ENV['max_files']}), "
                f"{_mb(self.max_unpacked_bytes)} unpacked ({self.ENV['max_unpacked_bytes']}), "
                f"{self.max_pixels / 1e6:g} megapixels per image ({self.ENV['max_pixels']})")


@dataclass
class Unpacked:
    """What an archive unpacked to: the dataset to list, and images refused one by one."""

    root: Path  # the folder everything was written under
    data: Path  # what to hand to ``list_images``: a folder, or the archive's CSV file
    files: int
    bytes: int
    rejected: dict[str, str] = field(default_factory=dict)  # resolved file path -> reason


def unpack_zip(archive: str | Path, target: str | Path, caps: ArchiveCaps | None = None) -> Unpacked:
    """Check ``archive`` and unpack it into the empty or new folder ``target``.

    Raises ``ArchiveError`` for a refused archive; ``target`` may then hold part of it and is the
    caller's to delete.
    """
    caps = caps or ArchiveCaps.from_env()
    archive, target = Path(archive), Path(target)
    size = archive.stat().st_size
    if size > caps.max_archive_bytes:
        raise ArchiveError(f"the archive is {_mb(size)}; the cap is {_mb(caps.max_archive_bytes)} "
                           f"(set {caps.ENV['max_archive_bytes']})")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ArchiveError(f"not a readable .zip archive ({_short(exc)})") from None
    try:
        with zf:
            entries = _checked_entries(zf, size, caps)
            target.mkdir(parents=True, exist_ok=True)
            written = 0
            for info, relative in entries:
                written += _copy_entry(zf, info, target / relative, caps.max_unpacked_bytes - written)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        raise ArchiveError(f"the archive is corrupt ({_short(exc)})") from None
    except NotImplementedError as exc:
        raise ArchiveError(f"the archive uses an unsupported compression ({_short(exc)}); use plain zip") from None
    except OSError as exc:  # a name this file system refuses, a full disk
        raise ArchiveError(f"an entry of the archive could not be unpacked ({exc.strerror or type(exc).__name__})"
                           ) from None
    rejected = _check_images(target, [relative for _, relative in entries], caps.max_pixels)
    return Unpacked(target, dataset_path(target), len(entries), written, rejected)


def _checked_entries(zf: zipfile.ZipFile, archive_size: int, caps: ArchiveCaps) -> list[tuple[zipfile.ZipInfo, str]]:
    """Every file entry to unpack with its safe relative path; raises on the first problem."""
    infos = zf.infolist()
    if len(infos) > 2 * caps.max_files:  # folders count too; far over either way
        raise ArchiveError(f"the archive holds {len(infos):,} entries; the cap is {caps.max_files:,} files "
                           f"(set {caps.ENV['max_files']})")
    entries, others, seen = [], [], set()
    total = 0
    for info in infos:
        name = info.filename
        parts = _parts(name)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ArchiveError(f"the archive holds a symbolic link ({_shown(name)}); links are not allowed")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"the archive holds an encrypted entry ({_shown(name)}); upload it without a password")
        if info.is_dir() or _ignored(parts):
            continue
        suffix = PurePosixPath(parts[-1]).suffix.lower()
        if suffix in ARCHIVE_SUFFIXES:
            raise ArchiveError(f"the archive holds another archive ({_shown(name)}); unpack it and zip the images themselves")
        if suffix not in IMAGE_SUFFIXES and suffix not in LABEL_SUFFIXES:
            others.append(name)
            continue
        relative = "/".join(parts)
        if relative.lower() in seen:
            raise ArchiveError(f"the archive holds {_shown(name)} twice")
        seen.add(relative.lower())
        if info.file_size > RATIO_CHECKED_ABOVE and info.file_size > caps.max_ratio * max(info.compress_size, 1):
            raise ArchiveError(f"{_shown(name)} unpacks {info.file_size / max(info.compress_size, 1):.0f} times larger than "
                               f"it is packed (a zip bomb?); the cap is {caps.max_ratio:g}x")
        total += info.file_size
        entries.append((info, relative))
    if others:
        listed = ", ".join(_shown(o) for o in others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise ArchiveError(f"the archive holds files that are neither images nor .csv/.txt label files: {listed}")
    clash = _file_and_folder([relative for _, relative in entries])
    if clash:
        raise ArchiveError(f"the archive holds both a file and a folder named {_shown(clash)}; rename one")
    if not any(PurePosixPath(relative).suffix.lower() in IMAGE_SUFFIXES for _, relative in entries):
        raise ArchiveError("the archive holds no images")
    if len(entries) > caps.max_files:
        raise ArchiveError(f"the archive holds {len(entries):,} files; the cap is {caps.max_files:,} "
                           f"(set {caps.ENV['max_files']})")
    if total > caps.max_unpacked_bytes:
        raise ArchiveError(f"the archive unpacks to {_mb(total)}; the cap is {_mb(caps.max_unpacked_bytes)} "
                           f"(set {caps.ENV['max_unpacked_bytes']})")
    if total > RATIO_CHECKED_ABOVE and total > caps.max_ratio * max(archive_size, 1):
        raise ArchiveError(f"the archive unpacks {total / archive_size:.0f} times larger than it is (a zip bomb?); "
                           f"the cap is {caps.max_ratio:g}x")
    return entries


def _parts(name: str) -> list[str]:
    """The path components of an entry name; refuses absolute paths and ``..``."""
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise ArchiveError(f"the archive holds an absolute path ({_shown(name)}); entries must be relative")
    parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"the archive holds a path that climbs out of its folder ({_shown(name)})")
    if not parts or any("\x00" in p for p in parts):
        raise ArchiveError(f"the archive holds an unusable entry name ({_shown(repr(name))})")
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for p in parts):
        raise ArchiveError(f"the archive holds a name longer than {MAX_NAME_BYTES} bytes ({_shown(name)}); "
                           "shorten it")
    return parts


def _shown(name: str) -> str:
    """An entry name as a message quotes it: one line, at most ``NAME_CHARS`` characters."""
    text = " ".join(str(name).split())
    return text if len(text) <= NAME_CHARS else text[: NAME_CHARS - 1] + "…"


def _file_and_folder(relatives: list[str]) -> str | None:
    """A name the archive uses both for a file and for a folder (they cannot both be unpacked)."""
    files = {r.lower() for r in relatives}
    for relative in relatives:
        parts = relative.lower().split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in files:
                return "/".join(relative.split("/")[:depth])
    return None


def _ignored(parts: list[str]) -> bool:
    return parts[-1].lower() in _IGNORED_NAMES or parts[-1].startswith("._") or any(
        p.lower() in _IGNORED_FOLDERS for p in parts[:-1])


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path, budget: int) -> int:
    destination.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(info) as source, open(destination, "xb") as out:  # "x": never through an existing name
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > budget:
                raise ArchiveError("the archive unpacks to more than its entries declare (a zip bomb?)")
            out.write(chunk)
    return written


def _check_images(root: Path, relatives: list[str], max_pixels: int) -> dict[str, str]:
    """Images over the pixel cap or not images at all, by resolved path; read from headers only."""
    rejected = {}
    for relative in relatives:
        path = root / relative
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            with Image.open(path) as image:
                width, height = image.size
        except Image.DecompressionBombError:
            rejected[str(path.resolve())] = (f"its header claims more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} "
                                             f"megapixels (a decompression bomb?); the cap is {max_pixels / 1e6:g}")
            continue
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            rejected[str(path.resolve())] = "not an image (its content is no picture Pillow reads)"
            continue
        if width * height > max_pixels:
            rejected[str(path.resolve())] = (f"{width}x{height} is {width * height / 1e6:.1f} megapixels; "
                                             f"the cap is {max_pixels / 1e6:g}")
    return rejected


def dataset_path(root: Path) -> Path:
    """The dataset inside an unpacked archive: below any single wrapping folder (but not into a
    split folder, which tells the split, nor a class folder, which has no subfolders), its CSV file
    when it holds one, else the folder."""
    folder = root
    while True:
        children = [c for c in folder.iterdir() if not c.name.startswith(".")]
        if (len(children) == 1 and children[0].is_dir() and children[0].name.lower() not in _SPLIT_NAMES
                and any(c.is_dir() for c in children[0].iterdir())):
            folder = children[0]
            continue
        break
    csvs = sorted(c for c in folder.iterdir() if c.is_file() and c.suffix.lower() == ".csv")
    return csvs[0] if len(csvs) == 1 else folder


def _mb(size: float) -> str:
    mb = size / 2**20
    return f"{mb / 1024:.3g} GB" if mb >= 1024 else f"{mb:.3g} MB"


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:NAME_CHARS] or type(exc).__name__
