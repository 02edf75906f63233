"""Uploaded labeled sets: every kind of bad archive gets one clear message and writes nothing outside."""
from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from data_explorer.archive import ArchiveCaps, ArchiveError, unpack_zip
from poster.data.datasets import list_images
from poster.data import sample_faces as _data
from tests._app import RAF_CLASSES, RAF_FOLDERS


def jpeg(i: int = 0, side: int = _data.SIDE) -> bytes:
    buffer = io.BytesIO()
    _data.face(i).resize((side, side)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def make_zip(path: Path, entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def imagefolder_entries(labels: list[int], prefix: str = "") -> dict[str, bytes]:
    return {f"{prefix}test/{RAF_FOLDERS[label]}/img_{i:02d}.jpg": jpeg(i) for i, label in enumerate(labels)}


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A folder whose only allowed new content is ``sandbox/out``."""
    (tmp_path / "sandbox").mkdir()
    return tmp_path / "sandbox"


def refused(archive: Path, sandbox: Path, caps: ArchiveCaps | None = None) -> str:
    before = {p for p in sandbox.parent.rglob("*")}
    with pytest.raises(ArchiveError) as info:
        unpack_zip(archive, sandbox / "out", caps or ArchiveCaps())
    after = {p for p in sandbox.parent.rglob("*")}
    outside = {p for p in after - before if sandbox / "out" not in (p, *p.parents)}
    assert not outside, f"wrote outside its folder: {outside}"
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_an_imagefolder_archive_unpacks_and_lists(tmp_path: Path, sandbox: Path) -> None:
    labels = [0, 1, 2, 3, 4, 5, 6, 3]
    entries = imagefolder_entries(labels, prefix="my-set/") | {"my-set/.DS_Store": b"x", "__MACOSX/my-set/._a.jpg": b"x"}
    unpacked = unpack_zip(make_zip(tmp_path / "set.zip", entries), sandbox / "out", ArchiveCaps())
    assert unpacked.files == 8 and unpacked.data == sandbox / "out" / "my-set" and not unpacked.rejected
    assert not (sandbox / "out" / "__MACOSX").exists()
    listing = list_images(unpacked.data, RAF_CLASSES, RAF_FOLDERS)
    assert sorted(i.label for i in listing.items) == sorted(labels)


def test_rafdb_and_csv_archives_find_their_dataset(tmp_path: Path, sandbox: Path) -> None:
    rafdb = {"basic/EmoLabel/list_patition_label.txt": b"test_0001.jpg 4\ntest_0002.jpg 1\n",
             "basic/Image/aligned/test_0001_aligned.jpg": jpeg(0), "basic/Image/aligned/test_0002_aligned.jpg": jpeg(1)}
    unpacked = unpack_zip(make_zip(tmp_path / "raf.zip", rafdb), sandbox / "raf", ArchiveCaps())
    listing = list_images(unpacked.data, RAF_CLASSES)
    assert listing.layout == "rafdb" and [i.label for i in listing.items] == [3, 0]
    csv = {"labels.csv": b"path,label\nfaces/a.jpg,Happiness\nfaces/b.jpg,Fear\nfaces/c.jpg,Joy\n",
           "faces/a.jpg": jpeg(0), "faces/b.jpg": jpeg(1), "faces/c.jpg": jpeg(2)}
    unpacked = unpack_zip(make_zip(tmp_path / "csv.zip", csv), sandbox / "csv", ArchiveCaps())
    assert unpacked.data.name == "labels.csv"
    listing = list_images(unpacked.data, RAF_CLASSES)
    assert [i.label for i in listing.items] == [3, 1]
    assert listing.skipped[0].path == "faces/c.jpg" and "not in the class list" in listing.skipped[0].reason


@pytest.mark.parametrize("name, words", [
    ("../escape.jpg", "climbs out"),
    ("test/1/../../../escape.jpg", "climbs out"),
    ("/etc/escape.jpg", "absolute path"),
    ("C:/Windows/escape.jpg", "absolute path"),
    ("..\\escape.jpg", "climbs out"),
])
def test_entries_that_climb_out_or_are_absolute_are_refused(tmp_path: Path, sandbox: Path, name: str, words: str) -> None:
    archive = make_zip(tmp_path / "bad.zip", imagefolder_entries([0, 1]) | {name: jpeg(3)})
    assert words in refused(archive, sandbox)
    assert not (tmp_path / "escape.jpg").exists()


def test_a_symlink_entry_is_refused(tmp_path: Path, sandbox: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("test/1/img.jpg", jpeg(0))
        link = zipfile.ZipInfo("test/1/secret.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    assert "symbolic link" in refused(archive, sandbox)


def test_zip_bombs_are_refused_by_ratio_and_by_total(tmp_path: Path, sandbox: Path) -> None:
    bomb = make_zip(tmp_path / "bomb.zip", {"test/1/img.jpg": jpeg(0), "test/1/zeros.bmp": bytes(30 << 20)})
    assert bomb.stat().st_size < 1 << 20
    assert "zip bomb" in refused(bomb, sandbox)
    stored = make_zip(tmp_path / "big.zip", imagefolder_entries([0, 1, 2, 3]), compression=zipfile.ZIP_STORED)
    message = refused(stored, sandbox, ArchiveCaps(max_unpacked_bytes=10_000))
    assert "unpacks to" in message and "POSTER_EVAL_MAX_UNPACKED_MB" in message


def test_a_lying_size_field_is_caught(tmp_path: Path, sandbox: Path) -> None:
    archive = make_zip(tmp_path / "lies.zip", {"test/1/a.jpg": jpeg(0), "test/1/b.bmp": bytes(300_000)})
    data = bytearray(archive.read_bytes())
    # Declare 1,000 bytes for every entry, in the local headers (offset 22) and the directory (24):
    # the declared total passes the cap, the real content does not fit it.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            data[start + offset:start + offset + 4] = (1000).to_bytes(4, "little")
            start += 4
    archive.write_bytes(bytes(data))
    message = refused(archive, sandbox, ArchiveCaps(max_unpacked_bytes=50_000))
    assert "corrupt" in message or "more than its entries declare" in message
    assert sum(p.stat().st_size for p in (sandbox / "out").rglob("*") if p.is_file()) <= 50_000


@pytest.mark.parametrize("name", ["test/1/more.zip", "test/1/photos.tar.gz", "test/1/x.7z"])
def test_nested_archives_are_refused(tmp_path: Path, sandbox: Path, name: str) -> None:
    archive = make_zip(tmp_path / "nested.zip", imagefolder_entries([0]) | {name: b"PK\x03\x04 inner"})
    assert "another archive" in refused(archive, sandbox)


def test_an_encrypted_entry_is_refused(tmp_path: Path, sandbox: Path) -> None:
    archive = make_zip(tmp_path / "locked.zip", imagefolder_entries([0, 1]))
    data = bytearray(archive.read_bytes())
    # Set the "encrypted" flag bit of every entry, in the local headers and the central directory.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            data[start + offset] |= 0x01
            start += 4
    archive.write_bytes(bytes(data))
    assert "encrypted" in refused(archive, sandbox)


@pytest.mark.parametrize("content", [b"", b"this is not a zip file at all", None])
def test_a_corrupt_archive_is_refused(tmp_path: Path, sandbox: Path, content: bytes | None) -> None:
    archive = tmp_path / "corrupt.zip"
    if content is None:  # a real archive with its compressed data damaged
        make_zip(archive, {"test/1/a.jpg": bytes(200_000), "test/1/b.jpg": jpeg(1)})
        data = bytearray(archive.read_bytes())
        for i in range(60, 200):
            data[i] ^= 0xFF
        archive.write_bytes(bytes(data))
    else:
        archive.write_bytes(content)
    message = refused(archive, sandbox)
    assert "corrupt" in message or "not a readable .zip" in message


def test_non_image_files_are_refused_and_listed(tmp_path: Path, sandbox: Path) -> None:
    archive = make_zip(tmp_path / "code.zip", imagefolder_entries([0]) | {"test/1/run.py": b"import os", "notes.docx": b"x"})
    message = refused(archive, sandbox)
    assert "neither images nor .csv/.txt" in message and "run.py" in message and "notes.docx" in message


def test_caps_on_archive_size_and_file_count(tmp_path: Path, sandbox: Path) -> None:
    archive = make_zip(tmp_path / "many.zip", imagefolder_entries([0, 1, 2, 3, 4]))
    assert "POSTER_EVAL_MAX_FILES" in refused(archive, sandbox, ArchiveCaps(max_files=4))
    assert "POSTER_EVAL_MAX_ARCHIVE_MB" in refused(archive, sandbox, ArchiveCaps(max_archive_bytes=1000))
    assert "no images" in refused(make_zip(tmp_path / "empty.zip", {"readme.txt": b"hi"}), sandbox)


def test_images_over_the_pixel_cap_or_not_images_are_rejected_one_by_one(tmp_path: Path, sandbox: Path) -> None:
    entries = imagefolder_entries([0, 1]) | {"test/2/huge.jpg": jpeg(2, side=400), "test/2/fake.jpg": b"no picture"}
    unpacked = unpack_zip(make_zip(tmp_path / "mixed.zip", entries), sandbox / "out", ArchiveCaps(max_pixels=50_000))
    reasons = {Path(k).name: v for k, v in unpacked.rejected.items()}
    assert set(reasons) == {"huge.jpg", "fake.jpg"}
    assert "400x400" in reasons["huge.jpg"] and "cap is 0.05" in reasons["huge.jpg"]
    assert reasons["fake.jpg"].startswith("not an image")


def test_caps_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTER_EVAL_MAX_ARCHIVE_MB", "5")
    monkeypatch.setenv("POSTER_EVAL_MAX_FILES", "12")
    monkeypatch.setenv("POSTER_EVAL_MAX_PIXELS", "not a number")
    caps = ArchiveCaps.from_env()
    assert caps.max_archive_bytes == 5 << 20 and caps.max_files == 12 and caps.max_pixels == ArchiveCaps().max_pixels
    text = caps.describe()
    assert "5 MB" in text and "12 files" in text and "POSTER_EVAL_MAX_PIXELS" in text
    with Image.open(io.BytesIO(jpeg(0))) as image:
        assert image.size == (_data.SIDE, _data.SIDE)
