"""load_image: every accepted input kind converts exactly; every bad input gives a one-line ImageError."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poster.errors import ImageError
from poster.inference.images import load_image


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares its size but holds almost no pixel data: decoding it would fail."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


def _raises(source, match: str, **kwargs) -> str:
    with pytest.raises(ImageError, match=match) as info:
        load_image(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return message


# --- bad inputs -------------------------------------------------------------------------------

def test_missing_path(tmp_path: Path) -> None:
    message = _raises(tmp_path / "nope.jpg", "file not found")
    assert "nope.jpg" in message


def test_directory(tmp_path: Path) -> None:
    _raises(tmp_path, "directory")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _raises(path, "empty file: empty.png")


def test_empty_bytes() -> None:
    _raises(b"", "empty")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list:\n- milk\n- eggs, café\n")
    assert _raises(path, "not an image") == "not an image: notes.jpg is a text file Pillow cannot read"


def test_binary_garbage_and_heic_are_named() -> None:
    _raises(bytes(range(256)) * 4, "not an image: .* in a format Pillow cannot read")
    heic = b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64
    _raises(heic, "HEIC")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path: Path, astronaut: np.ndarray, fmt: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    message = _raises(path, "truncated image")
    assert f"cut.{fmt.lower()}" in message


def test_pixel_limit_checked_before_decoding() -> None:
    # 10000x6000 is below Pillow's own warning limit, and the file has no pixel data at all:
    # only a header check can produce "too large" rather than "truncated".
    message = _raises(_png_header_only(10000, 6000), "image too large")
    assert "10000x6000 = 60.0 MP" in message and "50.0 MP limit" in message


def test_small_png_over_small_cap(astronaut: np.ndarray) -> None:
    _raises(_png_bytes(Image.fromarray(astronaut)), "image too large: .* 0.3 MP", max_pixels=100_000)


def test_pillow_decompression_bomb_becomes_image_error() -> None:
    _raises(_png_header_only(20000, 20000), "image too large", max_pixels=10**9)


def test_pixel_cap_also_applies_to_arrays() -> None:
    _raises(np.zeros((100, 100, 3), np.uint8), "too large", max_pixels=9_999)


@pytest.mark.parametrize("shape", [(0, 10, 3), (10, 0), (0,)])
def test_zero_size_array(shape: tuple[int, ...]) -> None:
    _raises(np.zeros(shape, np.uint8), "empty image")


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (8, 8, 2), (8,)])
def test_wrong_array_shape(shape: tuple[int, ...]) -> None:
    _raises(np.zeros(shape, np.uint8), "wrong array shape")


def test_bad_array_values() -> None:
    _raises(np.full((4, 4, 3), 2.0, np.float32), r"\[0, 1\]")
    _raises(np.full((4, 4), np.nan), "NaN")
    _raises(np.full((4, 4), 300, np.int64), "0..255")
    _raises(np.empty((4, 4), dtype=object), "dtype")


def test_unsupported_source_type() -> None:
    _raises(42, "unsupported image input: int")


def test_text_mode_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("hello")
    with open(path) as handle:
        _raises(handle, "'rb'")


# --- conversions ------------------------------------------------------------------------------

def _check_rgb(out: np.ndarray, shape: tuple[int, int]) -> None:
    assert out.shape == (*shape, 3) and out.dtype == np.uint8
    assert out.flags.c_contiguous and out.flags.writeable


def test_path_str_path_bytes_and_file_like_agree(tmp_path: Path, astronaut: np.ndarray) -> None:
    data = _png_bytes(Image.fromarray(astronaut))
    path = tmp_path / "a.png"
    path.write_bytes(data)
    for source in (path, str(path), data, bytearray(data), memoryview(data), io.BytesIO(data)):
        out = load_image(source)
        _check_rgb(out, (512, 512))
        np.testing.assert_array_equal(out, astronaut)


def test_real_jpeg_file(photo_path: Path, astronaut: np.ndarray) -> None:
    out = load_image(photo_path)
    _check_rgb(out, (512, 512))
    assert np.abs(out.astype(int) - astronaut).mean() < 3  # JPEG at quality 95


def test_grayscale_l() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = load_image(_png_bytes(Image.fromarray(gray)))
    _check_rgb(out, (3, 4))
    assert (out == gray[:, :, None]).all()


def test_la_and_rgba_composite_onto_white() -> None:
    alpha = np.array([[0, 128, 255]], np.uint8)
    expected = [255, (100 * 128 + 255 * 127 + 127) // 255, 100]
    la = Image.fromarray(np.stack([np.full_like(alpha, 100), alpha], axis=2), mode="LA")
    assert load_image(_png_bytes(la))[0, :, 0].tolist() == expected
    rgba = np.stack([np.full_like(alpha, 100), np.full_like(alpha, 10), np.zeros_like(alpha), alpha], 2)
    out = load_image(_png_bytes(Image.fromarray(rgba, mode="RGBA")))
    assert out[0, :, 0].tolist() == expected
    assert out[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white, not black


def test_palette_p(astronaut: np.ndarray) -> None:
    palette = Image.fromarray(astronaut).quantize(16)
    assert palette.mode == "P"
    np.testing.assert_array_equal(load_image(_png_bytes(palette)), np.asarray(palette.convert("RGB")))


def test_cmyk(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.tiff"
    Image.new("CMYK", (5, 4), (0, 255, 255, 0)).save(path)
    out = load_image(path)
    _check_rgb(out, (4, 5))
    assert out[0, 0].tolist() == [255, 0, 0]


def test_16_bit_png_and_32_bit_i() -> None:
    values = np.array([[0, 257, 40000, 65535]], np.uint16)
    image16 = Image.fromarray(values)
    assert image16.mode.startswith("I;16")
    assert load_image(_png_bytes(image16))[0, :, 1].tolist() == [0, 1, 156, 255]
    image32 = Image.fromarray(values.astype(np.int32))
    assert image32.mode == "I"
    assert load_image(image32)[0, :, 2].tolist() == [0, 1, 156, 255]


def test_exif_orientation_rotates(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # left half red
    stored[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    out = load_image(path)
    _check_rgb(out, (40, 20))
    assert out[2, 10, 0] > 200 and out[2, 10, 2] < 50  # red ends up on top
    assert out[37, 10, 2] > 200 and out[37, 10, 0] < 50


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 2
    out = load_image(path)
    _check_rgb(out, (6, 8))
    assert (out == (255, 0, 0)).all()


def test_bgr_flag_swaps_channels() -> None:
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[...] = (10, 20, 30)
    assert load_image(bgr)[0, 0].tolist() == [10, 20, 30]
    assert load_image(bgr, bgr=True)[0, 0].tolist() == [30, 20, 10]
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[...] = (10, 20, 30, 255)
    assert load_image(bgra, bgr=True)[0, 0].tolist() == [30, 20, 10]


def test_array_dtypes() -> None:
    floats = np.array([[0.0, 0.2, 1.0]], np.float32)
    assert load_image(floats)[0, :, 0].tolist() == [0, 51, 255]
    assert load_image(np.array([[0, 65535]], np.uint16))[0, :, 0].tolist() == [0, 255]
    assert load_image(np.array([[0, 200]], np.int64))[0, :, 0].tolist() == [0, 200]
    assert load_image(np.array([[False, True]]))[0, :, 0].tolist() == [0, 255]
    assert load_image(np.full((2, 2, 1), 7, np.uint8)).tolist() == [[[7] * 3] * 2] * 2


def test_array_result_does_not_alias_input() -> None:
    source = np.zeros((4, 4, 3), np.uint8)[:, ::-1]  # also not contiguous
    out = load_image(source)
    out[...] = 9
    assert source.max() == 0 and out.flags.c_contiguous


def test_pil_image_input_with_alpha() -> None:
    image = Image.new("RGBA", (3, 2), (0, 0, 0, 0))
    assert (load_image(image) == 255).all()
