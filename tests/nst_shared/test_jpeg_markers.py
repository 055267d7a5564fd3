"""The JPEG walk and skeleton that let the API check a JPEG without decoding its pictures."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from nst_shared import jpeg_markers
from nst_shared.errors import ImageError
from nst_shared.images import check_image, decode_image
from tests.pictures import photo_like


def encoded(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def jpeg_kinds() -> dict[str, bytes]:
    photo = photo_like(96, 64, seed=11)
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "baseline": encoded(photo, quality=90),
        "progressive": encoded(photo, quality=90, progressive=True),
        "grey": encoded(photo.convert("L")),
        "cmyk": encoded(photo.convert("CMYK")),
        "4:4:4": encoded(photo, subsampling=0),
        "exif": encoded(photo, exif=exif),
        "restarts": encoded(photo, restart_marker_blocks=1),
        "progressive restarts": encoded(photo, progressive=True, restart_marker_rows=1),
        "multi-picture": encoded(photo, "MPO", save_all=True, append_images=[photo.convert("L")]),
    }


def outcome(function, data: bytes) -> str:
    try:
        function(data)
    except ImageError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "accepted"


def damaged(data: bytes, rng: random.Random) -> list[bytes]:
    """Truncations, and one to three bytes overwritten (often in the headers, where libjpeg's fatal checks are)."""
    cases = [data[:cut] for cut in sorted(rng.sample(range(2, len(data)), 12))] + [data[:-2], data + b"junk"]
    for k in range(120):
        copy = bytearray(data)
        for _ in range(3 if k % 3 == 0 else 1):
            where = rng.randrange(2, len(data) if k % 2 else min(len(data), 700))
            copy[where] = rng.choice([rng.randrange(256), 0xFF, 0x00])
        cases.append(bytes(copy))
    return cases


def test_check_image_refuses_exactly_what_decode_image_refuses_on_damaged_jpegs():
    rng = random.Random(14)
    seen = {"accepted": 0, "refused by the walk": 0, "refused by libjpeg": 0}
    for kind, data in jpeg_kinds().items():
        assert outcome(check_image, data) == outcome(decode_image, data) == "accepted", kind
        for case in damaged(data, rng):
            decoded = outcome(decode_image, case)
            assert outcome(check_image, case) == decoded, (kind, decoded)
            if decoded == "accepted":
                seen["accepted"] += 1
            elif "the JPEG " in decoded:
                seen["refused by the walk"] += 1
            elif "broken data stream" in decoded:
                seen["refused by libjpeg"] += 1
    assert min(seen.values()) >= 30, seen  # every path is exercised


def test_skeleton_keeps_the_headers_and_drops_the_picture_data():
    data = encoded(photo_like(400, 300, seed=12), quality=95)
    skeleton = jpeg_markers.skeleton(data)
    assert len(skeleton) < 1000 < len(data) // 20
    assert skeleton.startswith(b"\xff\xd8") and skeleton.endswith(b"\xff\xd9")
    assert Image.open(io.BytesIO(skeleton)).size == (400, 300)
    kinds = [part.kind for part in jpeg_markers.parts(data)]
    assert kinds.count(jpeg_markers.ENTROPY) == kinds.count(jpeg_markers.SOS) == 1


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: d[:-2], "ends before its end-of-image marker"),
        (lambda d: d[: len(d) * 2 // 3], "ends before its end-of-image marker"),
        (lambda d: d[:-2] + b"\xff\x75\x00\x04ab" + d[-2:], "unknown marker 0x75 at byte"),
        (lambda d: d[:-2] + b"\xff\xfe\x00\x01" + d[-2:], "impossible length"),
    ],
)
def test_the_walk_refuses_what_libjpeg_cannot_read_with_a_reason(mangle, message):
    data = mangle(encoded(photo_like(320, 240, seed=13), quality=95))
    with pytest.raises(jpeg_markers.JpegStructureError, match=message):
        jpeg_markers.skeleton(data)
    for function in (check_image, decode_image):
        with pytest.raises(ImageError, match=message):
            function(data)


def test_the_walk_refuses_an_end_before_any_scan():
    data = encoded(photo_like(64, 48, seed=13))
    with pytest.raises(jpeg_markers.JpegStructureError, match="at byte 2 before any picture data"):
        jpeg_markers.skeleton(data[:2] + b"\xff\xd9" + data[2:])


def test_junk_between_segments_is_skipped_as_libjpeg_skips_it():
    data = encoded(photo_like(64, 48, seed=15))
    after_app0 = next(p.end for p in jpeg_markers.parts(data) if p.kind == 0xE0)
    with_junk = data[:after_app0] + b"\x00\x00junk" + data[after_app0:]
    assert jpeg_markers.JUNK in [p.kind for p in jpeg_markers.parts(with_junk)]
    assert check_image(with_junk) == decode_image(with_junk).size == (64, 48)
