"""Turn whatever a person hands us (path, bytes, file, PIL image, array) into an RGB uint8 array.

Every failure becomes an ``ImageError`` with a one-line message meant to be shown as it is.
Pillow's global settings (``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``) are never changed:
the pixel limit is checked here from the header, before any pixel data is decoded.

Transparent images are composited onto white: dropping alpha would show whatever colour the
fully transparent pixels happen to store (often black or noise), while white is how the image
looks on a page.
"""
from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]

DEFAULT_MAX_PIXELS = 50_000_000

# Formats Pillow (without plugins) cannot decode, recognised by their first bytes so the
# message can say what the file is instead of "cannot identify".
_FOREIGN_SIGNATURES = (
    (b"%PDF", "a PDF document"),
    (b"<svg", "an SVG drawing"),
    (b"8BPS", "a Photoshop document"),
)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")

# Exceptions Pillow raises while decoding damaged data (SyntaxError: broken PNG chunks,
# struct.error: short headers); DecompressionBombError is a subclass of Exception.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
                  Image.DecompressionBombError)


def load_image(source: ImageSource, *, bgr: bool = False,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return ``source`` as a contiguous HxWx3 uint8 RGB array.

    Files and PIL images get their EXIF orientation applied and only their first frame read.
    Arrays may be HxW, HxWx1, HxWx3 or HxWx4; ``bgr=True`` says a 3/4-channel array is in
    OpenCV's BGR(A) order. Float arrays must hold values in [0, 1]; wider unsigned integers
    (uint16, ...) are scaled down to 8 bits. Raises ``ImageError`` for anything unusable.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, bgr=bgr, max_pixels=max_pixels)
    if isinstance(source, Image.Image):
        return _decode(source, "the image", max_pixels)
    if isinstance(source, (str, os.PathLike)):
        return _from_path(Path(source), max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(source), "the uploaded data", max_pixels)
    if hasattr(source, "read"):
        name = Path(str(getattr(source, "name", "") or "the uploaded file")).name
        try:
            data = source.read()
        except (OSError, ValueError) as exc:
            raise ImageError(f"cannot read {name}: {_one_line(exc)}") from exc
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(f"cannot read {name}: the file was opened in text mode, open it with 'rb'")
        return _from_bytes(bytes(data), name, max_pixels)
    raise ImageError(f"unsupported image input: {type(source).__name__} "
                     "(expected a path, bytes, a file, a PIL image or a numpy array)")


def _from_path(path: Path, max_pixels: int) -> np.ndarray:
    name = path.name or str(path)
    try:
        if not path.exists():
            raise ImageError(f"file not found: {path}")
        if path.is_dir():
            raise ImageError(f"not a file: {path} is a directory")
        if path.stat().st_size == 0:
            raise ImageError(f"empty file: {name} has 0 bytes")
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ImageError(f"cannot read {name}: {exc.strerror or _one_line(exc)}") from exc
    return _from_bytes(data, name, max_pixels)


def _from_bytes(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    if not data:
        raise ImageError(f"empty file: {name} has 0 bytes")
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below is the limit; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError(f"not an image: {name} is {_describe(data)} Pillow cannot read") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large: {name} exceeds Pillow's decompression-bomb limit "
                         f"({_one_line(exc)})") from exc
    except DECODE_ERRORS as exc:
        raise ImageError(f"corrupt image: {name} could not be opened ({_one_line(exc)})") from exc
    with image:
        return _decode(image, name, max_pixels)


def _decode(image: Image.Image, name: str, max_pixels: int) -> np.ndarray:
    """Check the size from the header, then decode the first frame and convert it to RGB."""
    _check_pixels(image.width, image.height, max_pixels, name)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        # np.asarray of a PIL image is read-only; callers may draw on the result.
        return np.require(_pil_to_rgb(image), np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])
    except ImageError:
        raise
    except DECODE_ERRORS as exc:
        text = _one_line(exc)
        if isinstance(exc, EOFError) or "truncated" in text.lower():
            raise ImageError(f"truncated image: {name} ends before all pixels ({text})") from exc
        raise ImageError(f"corrupt image: {name} could not be decoded ({text})") from exc


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        array = np.asarray(image)
        if mode == "I":
            # Pillow uses 32-bit "I" for 16-bit grayscale from some formats (TIFF, older PNG).
            array = np.clip(array, 0, 65535).astype(np.uint16)
        return _gray_to_rgb(_to_uint8(array))
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _on_white(np.asarray(image.convert("RGBA")))
    return np.asarray(image.convert("RGB"))


def _from_array(array: np.ndarray, *, bgr: bool, max_pixels: int) -> np.ndarray:
    if array.size == 0:
        raise ImageError(f"empty image: the array has shape {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageError(f"wrong array shape: {array.shape}, expected HxW, HxWx3 or HxWx4")
    _check_pixels(array.shape[1], array.shape[0], max_pixels, "the array")
    array = _to_uint8(array)
    if array.ndim == 2:
        return _gray_to_rgb(array)
    if bgr:
        array = array[:, :, [2, 1, 0, 3][: array.shape[2]]]
    if array.shape[2] == 4:
        return _on_white(array)
    return np.array(array, order="C")  # a copy: the caller's array must not alias the result


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale any numeric pixel array to uint8 (see ``load_image`` for the rules)."""
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return array
    if kind == "b":
        return array.astype(np.uint8) * 255
    if kind == "f":
        low, high = float(np.min(array)), float(np.max(array))
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ImageError("invalid float image: it contains NaN or infinite values")
        if low < 0.0 or high > 1.0:
            raise ImageError(f"float image values must lie in [0, 1], got {low:g}..{high:g} "
                             "(divide 0-255 data by 255 first)")
        return np.round(array * 255.0).astype(np.uint8)
    if kind == "u":
        # Shift keeps the top 8 bits: 65535 -> 255 without a float copy of a large image.
        return (array >> (8 * array.dtype.itemsize - 8)).astype(np.uint8)
    if kind == "i":
        low, high = int(np.min(array)), int(np.max(array))
        if low >= 0 and high <= 255:
            return array.astype(np.uint8)
        raise ImageError(f"integer image values must lie in 0..255, got {low}..{high} "
                         f"({array.dtype}); pass uint16 for 16-bit data")
    raise ImageError(f"wrong array dtype: {array.dtype} is not a pixel type")


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite an HxWx4 uint8 array onto a white background."""
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    rgb = rgba[:, :, :3].astype(np.uint16)
    # Integer "a*x + (255-a)*255" with rounding division; exact for alpha 0 and 255.
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(out.astype(np.uint8))


def _check_pixels(width: int, height: int, max_pixels: int, name: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"empty image: {name} is {width}x{height} pixels")
    if width * height > max_pixels:
        raise ImageError(f"image too large: {name} is {width}x{height} = "
                         f"{width * height / 1e6:.1f} MP, exceeding the {max_pixels / 1e6:.1f} MP limit")


def _describe(data: bytes) -> str:
    """Name what an unreadable file seems to be, from its first bytes."""
    head = data[:512]
    for signature, what in _FOREIGN_SIGNATURES:
        if head.lstrip().startswith(signature):
            return what
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "a HEIC/HEIF photo (convert it to JPEG or PNG)"
    # The 512-byte cut may split a multi-byte character; only that tail may fail to decode.
    text = head.decode("utf-8", "replace").rstrip("\ufffd")
    if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "a text file"
    return "in a format"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
