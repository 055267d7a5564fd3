"""Decoding, validating, resizing and encoding untrusted images (Pillow only, no torch: the API uses it too)."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from nst_shared import jpeg_markers, provenance
from nst_shared.errors import ImageTooLarge, ImageTooSmall, UnreadableImage, UnsupportedImageFormat
from nst_shared.settings import Settings

# Only these decoders ever see user bytes; Pillow would otherwise try every plugin it has (EPS, PSD...).
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
DEFAULT_MAX_PIXELS = Settings.model_fields["max_image_pixels"].default  # NST_MAX_IMAGE_PIXELS
# VGG19 pools four times before conv5_1: a side under 16 px has no conv5_1 activation left; 32 keeps 2x2.
MIN_SIDE_PX = 32
_ORIENTATION = 0x0112  # the EXIF tag exif_transpose follows

OUTPUT_FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_FOREIGN_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF8", "GIF"),
    (b"<svg", "SVG"),
    (b"<?xml", "SVG/XML"),
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
)


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode untrusted bytes into an upright RGB image, or raise a typed `ImageError`."""
    image, _ = _open(data, max_pixels=max_pixels)
    return _upright_rgb(image)


def check_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    hold: Callable[[int], AbstractContextManager[object]] | None = None,
) -> tuple[int, int]:
    """Refuse exactly what `decode_image` refuses, at a fraction of its cost; returns the upright size.

    A JPEG's structure is walked and its skeleton (headers, tables and markers; no entropy-coded data) decoded at
    1/8 scale, so libjpeg makes all its fatal checks in about 1 ms a megabyte. Other formats are decoded whole.
    `hold(pixels)`, when given, is entered around the decoding with the pixels it allocates, so a caller can
    bound how many are decoded at once."""
    image, skeleton = _open(data, max_pixels=max_pixels)
    width, height = image.size
    decoded = image
    if skeleton is not None:
        try:
            with warnings.catch_warnings():  # the skeleton's multi-picture index points past its end
                warnings.simplefilter("ignore")
                decoded = Image.open(io.BytesIO(skeleton), formats=("JPEG",))
        except Exception as exc:  # not seen in the tests' damaged files: a 422 all the same, never a 500
            raise UnreadableImage(f"the image data is damaged or truncated: {exc}") from None
        decoded.draft(decoded.mode, (max(1, width // 8), max(1, height // 8)))
    with hold(decoded.size[0] * decoded.size[1]) if hold else contextlib.nullcontext():
        _upright_rgb(decoded)
    try:
        turned = image.getexif().get(_ORIENTATION) in (5, 6, 7, 8)  # a quarter turn swaps the sides
    except Exception:  # exif_transpose read it above: this does not fail
        turned = False
    return (height, width) if turned else (width, height)


def _open(data: bytes, *, max_pixels: int) -> tuple[Image.Image, bytes | None]:
    """The image, its header and its structure checked, and a JPEG's skeleton (`jpeg_markers`); nothing decoded."""
    if not data:
        raise UnreadableImage("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"the image has too many pixels ({exc})") from None
    except UnidentifiedImageError:
        raise _unidentified(data) from None
    except Exception as exc:  # Pillow raises many kinds for malformed headers
        raise UnreadableImage(f"the image cannot be read: {exc}") from None

    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} = {width * height} pixels; at most {max_pixels} are allowed"
        )
    # A multi-picture JPEG (MPO: a phone's photo with its gain map or depth map) is its first picture.
    if getattr(image, "n_frames", 1) > 1 and image.format != "MPO":
        raise UnsupportedImageFormat(f"animated or multi-frame {image.format} images are not supported")
    return image, _jpeg_skeleton(data) if image.format in ("JPEG", "MPO") else None


def _jpeg_skeleton(data: bytes) -> bytes:
    try:
        return jpeg_markers.skeleton(data)
    except jpeg_markers.JpegStructureError as exc:
        raise UnreadableImage(f"the image data is damaged or truncated: {exc}") from None


def _upright_rgb(image: Image.Image) -> Image.Image:
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except Exception as exc:  # truncated data, broken chunks, bad EXIF
        raise UnreadableImage(f"the image data is damaged or truncated: {exc}") from None
    return to_rgb(image)


def _unidentified(data: bytes) -> Exception:
    head = data[:64].lstrip()
    for signature, name in _FOREIGN_SIGNATURES:
        if head.startswith(signature):
            return UnsupportedImageFormat(f"{name} is not supported; use JPEG, PNG, WebP, BMP or TIFF")
    return UnreadableImage("the file is not an image in a supported format (JPEG, PNG, WebP, BMP, TIFF)")


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read and decode an image file (see `decode_image`)."""
    return decode_image(read_file(path), max_pixels=max_pixels)


def read_file(path: str | Path) -> bytes:
    """A file's bytes; `UnreadableImage` when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableImage(f"cannot read {path}: {exc.strerror or exc}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _wide_to_rgb(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def _wide_to_rgb(image: Image.Image) -> Image.Image:
    # Pillow's convert("L") clips 16-bit values at 255 (a white picture); scale the range down instead.
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0
    else:
        top = 255.0 if values.max(initial=0.0) <= 255 else 65535.0
    gray = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def fit_size(width: int, height: int, max_size: int) -> tuple[int, int]:
    """The size whose longest side is `max_size`, keeping the aspect ratio."""
    scale = max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to exactly `size` (width, height) with a filter suited to the direction."""
    if image.size == size:
        return image
    shrinking = size[0] * size[1] < image.size[0] * image.size[1]
    return image.resize(size, Image.Resampling.LANCZOS if shrinking else Image.Resampling.BICUBIC)


def check_min_side(size: tuple[int, int], what: str) -> None:
    """Raise `ImageTooSmall` when a side is too short for VGG19's deepest style layer."""
    if min(size) < MIN_SIDE_PX:
        raise ImageTooSmall(
            f"the {what} would be {size[0]}x{size[1]} px; each side needs at least "
            f"{MIN_SIDE_PX} px (check its aspect ratio and max_size)"
        )


def output_format(path: str | Path) -> str:
    """The Pillow format for an output file name: PNG unless the suffix asks for JPEG or WebP."""
    return OUTPUT_FORMATS.get(Path(path).suffix.lower(), "PNG")


def encode_image(
    image: Image.Image, format: str = "PNG", *, record: Mapping[str, Any] | None = None, quality: int = 95
) -> bytes:
    """Encode as PNG (lossless), or JPEG / WebP / AVIF at `quality`; with `record` (nst_shared.provenance.build)
    inside the file."""
    buffer = io.BytesIO()
    fmt = format.upper() if format.upper() in ("JPEG", "WEBP", "AVIF") else "PNG"
    options: dict[str, Any] = {"quality": quality} if fmt != "PNG" else {}
    if record is not None:
        options.update(provenance.save_options(fmt, record))
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()
