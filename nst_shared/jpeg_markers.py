"""A JPEG's structure as libjpeg's marker reader (jdmarker.c) walks it, without decoding any picture.

`skeleton` keeps every marker segment and drops the entropy-coded data, where libjpeg only ever warns: decoding
the skeleton refuses exactly what decoding the file refuses, for the cost of its headers (tests hold it to that).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

ENTROPY = -1  # a scan's entropy-coded data (its restart markers included)
JUNK = -2  # bytes between segments, which libjpeg skips with a warning
SOS, EOI = 0xDA, 0xD9
_NO_LENGTH = {0x01, 0xD8, EOI, *range(0xD0, 0xD8)}  # TEM, SOI, EOI, RST0-7
# The markers libjpeg's read_markers() knows; it refuses any other, so the walk does.
_KNOWN = _NO_LENGTH | {*range(0xC0, 0xD0), SOS, 0xDB, 0xDC, 0xDD, *range(0xE0, 0xF0), 0xFE}
_NEXT_MARKER = re.compile(rb"\xff([^\x00\xff])")  # next_marker(): fill bytes, skipping junk and stuffed zeros
_SCAN_END = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")  # the entropy decoder stops at any marker but a restart


class JpegStructureError(ValueError):
    """The JPEG ends before its end-of-image marker, or holds a marker or a length libjpeg refuses."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset  # where the damage starts (the file's length when it ends early)


@dataclass(frozen=True)
class Part:
    kind: int  # the marker (0x01..0xFE), ENTROPY or JUNK
    start: int  # a marker segment starts at its 0xFF
    end: int


def parts(data: bytes, pos: int = 0) -> Iterator[Part]:
    """The parts of the JPEG whose start-of-image is at `pos`, up to its end-of-image marker included."""
    n = len(data)
    yield Part(0xD8, pos, pos + 2)
    i = pos + 2
    scanned = False
    while True:
        found = _NEXT_MARKER.search(data, i)
        if found is None:
            raise JpegStructureError("the JPEG ends before its end-of-image marker", n)
        if found.start() > i:
            yield Part(JUNK, i, found.start())
        marker, start, i = found.group(1)[0], found.start(), found.end()
        if marker not in _KNOWN:
            raise JpegStructureError(f"the JPEG has an unknown marker 0x{marker:02X} at byte {start}", start)
        if marker == EOI and not scanned:  # libjpeg: "Empty JPEG image"
            raise JpegStructureError(f"the JPEG ends at byte {start} before any picture data", start)
        if marker in _NO_LENGTH:
            yield Part(marker, start, i)
            if marker == EOI:
                return
            continue
        if i + 2 > n:
            raise JpegStructureError("the JPEG ends before its end-of-image marker", n)
        length = struct.unpack_from(">H", data, i)[0]
        if length < 2:
            raise JpegStructureError(f"the JPEG's segment at byte {start} has an impossible length", start)
        if i + length > n:
            raise JpegStructureError("the JPEG ends before its end-of-image marker", n)
        i += length
        yield Part(marker, start, i)
        if marker == SOS:
            scanned = True
            scan_end = _SCAN_END.search(data, i)
            if scan_end is None:
                raise JpegStructureError("the JPEG ends before its end-of-image marker", n)
            yield Part(ENTROPY, i, scan_end.start())
            i = scan_end.start()


def skeleton(data: bytes) -> bytes:
    """The JPEG's marker segments without its entropy-coded data and junk; raises `JpegStructureError`."""
    return b"".join(data[p.start : p.end] for p in parts(data) if p.kind not in (ENTROPY, JUNK))
