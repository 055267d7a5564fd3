"""Finding a second, active file hidden in an image (a polyglot: a picture that is also a page, a script or a
document), by looking for markup only where markup can live: comments, metadata segments and chunks, and data
after the image's end. Pixel data (JPEG scans, PNG IDAT, WebP bitstreams, TIFF strips, BMP arrays, the video
of a motion photo) is skipped: compressed data contains `<svg` by chance (one in 2^29 bytes), so searching it
refuses ordinary photos. What phones append after a JPEG's end is walked, not searched: more JPEGs (multi-
picture frames, gain maps) and ISO BMFF video (motion photos)."""

from __future__ import annotations

import struct
from collections.abc import Iterator

from PIL import Image

from nst_shared import jpeg_markers

# Long enough that a metadata segment never contains one by chance.
MARKERS: tuple[tuple[bytes, str], ...] = (
    (b"<script", "a script"),
    (b"<html", "HTML"),
    (b"<!doctype", "HTML"),
    (b"<svg", "SVG"),
    (b"<?php", "PHP"),
    (b"%pdf-", "a PDF"),
    (b"javascript:", "a script"),
)  # Not "<?xml": cameras and editors embed XMP metadata, which is XML.

_JPEG_SOI = b"\xff\xd8\xff"
_PNG_END = b"IEND\xaeB`\x82"
_SAMSUNG_MOTION = b"MotionPhoto_Data"  # Samsung writes this before the video it appends
_WEBP_PIXELS = {b"VP8 ", b"VP8L", b"ALPH", b"ANMF"}

Region = tuple[int, int]


class PngTrailer(ValueError):
    """Raised when a PNG has bytes after its IEND chunk (a polyglot or a damaged file)."""


def hidden_markup(data: bytes, format: str, image: Image.Image) -> str | None:
    """What the file hides where markup can live ("SVG", "a script", ...), or None; raises `PngTrailer`."""
    for start, end in _regions(data, format, image):
        lowered = data[start:end].lower()
        for marker, what in MARKERS:
            if marker in lowered:
                return what
    return None


def _regions(data: bytes, format: str, image: Image.Image) -> Iterator[Region]:
    if format in ("JPEG", "MPO"):
        return _jpeg(data, 0)
    if format == "PNG":
        return _png(data)
    if format == "WEBP":
        return _webp(data)
    return _outside_pixels(data, image)


def _jpeg(data: bytes, pos: int) -> Iterator[Region]:
    """The JPEG at `pos`'s metadata (APPn and comments) and junk between its segments, then what follows its end."""
    try:
        for part in jpeg_markers.parts(data, pos):
            if part.kind == jpeg_markers.JUNK:
                yield part.start, part.end
            elif 0xE0 <= part.kind <= 0xEF or part.kind == 0xFE:  # APPn (EXIF, XMP, ICC, MPF...) and comments
                yield part.start + 4, part.end
            elif part.kind == jpeg_markers.EOI:
                yield from _after_jpeg(data, part.end)
    except jpeg_markers.JpegStructureError as exc:
        yield exc.offset, len(data)  # damaged from there on: searched


def _after_jpeg(data: bytes, pos: int) -> Iterator[Region]:
    if data.startswith(_JPEG_SOI, pos):  # another picture: a multi-picture frame or a gain map
        yield from _jpeg(data, pos)
    elif data.startswith(_SAMSUNG_MOTION, pos):
        yield from _bmff(data, pos + len(_SAMSUNG_MOTION))
    elif data[pos + 4 : pos + 8] == b"ftyp":  # a motion photo's video (Google's and others')
        yield from _bmff(data, pos)
    elif pos < len(data):
        yield pos, len(data)  # anything else after the end is searched (padding has no markup)


def _bmff(data: bytes, pos: int) -> Iterator[Region]:
    """ISO BMFF boxes (MP4, HEIF) from `pos`: every box but the media data, then whatever follows them."""
    n = len(data)
    while pos + 8 <= n:
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1 and pos + 16 <= n:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
        elif size == 0:
            size = n - pos
        if size < 8 or not kind.isascii() or not kind.decode("ascii").isprintable():
            break  # not a box: searched below
        if kind != b"mdat":
            yield pos, min(pos + size, n)
        pos += size
    if pos < n:
        yield pos, n  # a trailer (Samsung's SEF index) or anything else


def _png(data: bytes) -> Iterator[Region]:
    """Every chunk's data but the compressed pixels; bytes after IEND are refused outright."""
    n = len(data)
    pos = 8
    while pos + 8 <= n:
        length, kind = struct.unpack_from(">I4s", data, pos)
        start, end = pos + 8, min(pos + 8 + length, n)
        if kind not in (b"IDAT", b"fdAT"):
            yield start, end
        pos = end + 4
        if kind == b"IEND":
            break
    end = data.rfind(_PNG_END)
    if end != -1 and len(data) > end + len(_PNG_END):
        raise PngTrailer(
            f"the PNG file has {len(data) - end - len(_PNG_END)} bytes after its end (a polyglot "
            "or damaged file); send a plain image"
        )


def _webp(data: bytes) -> Iterator[Region]:
    """RIFF chunks but the bitstreams (EXIF, XMP, ICC...), then anything after the RIFF container."""
    n = len(data)
    riff_end = min(8 + struct.unpack_from("<I", data, 4)[0], n) if n >= 12 else n
    pos = 12
    while pos + 8 <= riff_end:
        kind, length = struct.unpack_from("<4sI", data, pos)
        start, end = pos + 8, min(pos + 8 + length, riff_end)
        if kind not in _WEBP_PIXELS:
            yield start, end
        pos = end + (length & 1)
    if riff_end < n:
        yield riff_end, n


def _outside_pixels(data: bytes, image: Image.Image) -> Iterator[Region]:
    """TIFF and BMP: everything but the pixel data Pillow located (strips, tiles, the BMP array)."""
    pixels: list[Region] = []
    tags = getattr(image, "tag_v2", None)
    if tags is not None:
        for offsets_tag, counts_tag in ((273, 279), (324, 325)):  # strips, tiles
            offsets, counts = tags.get(offsets_tag), tags.get(counts_tag)
            if offsets and counts:
                offsets = offsets if isinstance(offsets, tuple) else (offsets,)
                counts = counts if isinstance(counts, tuple) else (counts,)
                pixels += [(o, o + c) for o, c in zip(offsets, counts)]
    else:
        # BMP (an ImageFile, whose tiles Image does not declare): a raw tile's args are (mode, stride, orientation);
        # RLE runs to the end.
        for tile in getattr(image, "tile", ()):
            args = tile.args if isinstance(tile.args, tuple) else ()
            stride = args[1] if tile.codec_name == "raw" and len(args) > 1 and isinstance(args[1], int) else 0
            rows = tile.extents[3] - tile.extents[1] if tile.extents else 0
            pixels.append((tile.offset, tile.offset + stride * rows if stride > 0 else len(data)))
    pos = 0
    for start, end in sorted(pixels):
        if start > pos:
            yield pos, start
        pos = max(pos, end)
    if pos < len(data):
        yield pos, len(data)
