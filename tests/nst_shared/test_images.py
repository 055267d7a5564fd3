from __future__ import annotations

import contextlib
import functools
import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from nst_shared.errors import ImageError, ImageTooLarge, UnreadableImage, UnsupportedImageFormat
from nst_shared.images import check_image, decode_image, encode_image, fit_size, output_format
from service.decoding import PixelBudget
from tests.pictures import photo_like


def encoded(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_decode_image_applies_exif_orientation():
    image = Image.new("RGB", (60, 30), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(encoded(image, "JPEG", exif=exif))
    assert decoded.size == (30, 60)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "CMYK", "1", "P", "I;16", "I", "F"])
def test_decode_image_converts_every_mode_to_rgb(mode):
    fmt = "TIFF" if mode in ("CMYK", "F", "I") else "PNG"
    source = Image.new(mode, (40, 40))
    decoded = decode_image(encoded(source, fmt))
    assert decoded.mode == "RGB" and decoded.size == (40, 40)


def test_decode_image_scales_16_bit_instead_of_clipping():
    wide = Image.fromarray(np.full((40, 40), 32768, dtype=np.uint16))  # mid grey in 16 bits
    assert decode_image(encoded(wide)).getpixel((0, 0)) == (128, 128, 128)


def test_decode_image_composites_transparency_over_white():
    clear = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    assert decode_image(encoded(clear)).getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    assert decode_image(encoded(palette)).getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF"])
def test_decode_image_allows_listed_formats(fmt):
    assert decode_image(encoded(Image.new("RGB", (40, 40), (1, 2, 3)), fmt)).size == (40, 40)


def test_decode_image_refuses_other_formats():
    for data in (
        encoded(Image.new("RGB", (40, 40)), "GIF"),
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"%PDF-1.4 ...",
        encoded(Image.new("RGB", (40, 40)), "ICO"),
    ):
        with pytest.raises(UnsupportedImageFormat):
            decode_image(data)


def test_decode_image_refuses_animation():
    frames = [Image.new("RGB", (40, 40), (i * 60, 0, 0)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedImageFormat, match="animated"):
        decode_image(buffer.getvalue())


def test_decode_image_refuses_empty_truncated_and_garbage():
    for data in (b"", encoded(Image.new("RGB", (200, 200)), "JPEG")[:200], b"\x89PNG\r\n\x1a\n" + b"0" * 50, b"hello"):
        with pytest.raises(UnreadableImage):
            decode_image(data)


def test_decode_image_refuses_decompression_bomb_without_decoding():
    # A 1-bit PNG of 20000x20000 is a few kB on disk and 400 megapixels in memory.
    bomb = encoded(Image.new("1", (20000, 20000)))
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLarge):
        decode_image(bomb, max_pixels=40_000_000)
    with pytest.raises(ImageTooLarge):
        decode_image(encoded(Image.new("RGB", (300, 300))), max_pixels=50_000)


def test_fit_size_and_output_formats():
    assert fit_size(1024, 768, 384) == (384, 288) and fit_size(10, 20, 40) == (20, 40)
    assert output_format("a.JPG") == "JPEG" and output_format("a.webp") == "WEBP" and output_format("a") == "PNG"
    for fmt in ("PNG", "JPEG", "WEBP"):
        assert Image.open(io.BytesIO(encode_image(Image.new("RGB", (8, 8)), fmt))).format == fmt


def _patched_png(width: int, height: int) -> bytes:
    data = bytearray(encoded(Image.new("RGB", (8, 8))))
    struct.pack_into(">II", data, 16, width, height)  # IHDR's fields, then its CRC over type and data
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _patched_jpeg(width: int, height: int) -> bytes:
    data = bytearray(encoded(Image.new("RGB", (8, 8)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _patched_webp(width: int, height: int) -> bytes:
    data = bytearray(encoded(Image.new("RGB", (8, 8)), "WEBP", quality=50))
    start = data.index(b"\x9d\x01\x2a")  # the VP8 key frame's start code, then 14-bit width and height
    struct.pack_into("<HH", data, start + 3, width, height)
    return bytes(data)


def _patched_bmp(width: int, height: int) -> bytes:
    data = bytearray(encoded(Image.new("RGB", (8, 8)), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def _patched_tiff(width: int, height: int) -> bytes:
    data = bytearray(encoded(Image.new("RGB", (8, 8)), "TIFF"))
    assert data[:2] == b"II"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength
            struct.pack_into("<I" if kind == 4 else "<H", data, entry + 8, width if tag == 256 else height)
    return bytes(data)


@pytest.mark.parametrize(
    "patch, side",
    [
        (_patched_png, 100_000),
        (_patched_jpeg, 65_000),
        (_patched_webp, 16_383),
        (_patched_bmp, 100_000),
        (_patched_tiff, 65_000),
    ],
)
def test_decode_image_refuses_tiny_file_declaring_huge_size(patch, side):
    bomb = patch(side, side)
    assert len(bomb) < 2_000
    started = time.monotonic()
    with pytest.raises(ImageTooLarge):
        decode_image(bomb, max_pixels=40_000_000)
    assert time.monotonic() - started < 1  # refused from the header, nothing decoded
    # Under Pillow's own bomb limit but over ours: refused by our pixel limit, before decoding too.
    with pytest.raises(ImageTooLarge, match="at most 1000000"):
        decode_image(patch(2000, 1000), max_pixels=1_000_000)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def test_decode_image_accepts_a_phones_multi_picture_jpeg():
    photo = photo_like(96, 64, seed=3)
    gain_map = photo_like(48, 32, seed=4).convert("L")
    multi_picture = encoded(photo, "MPO", save_all=True, append_images=[gain_map])  # MPF: Ultra HDR, depth maps
    assert decode_image(multi_picture).size == (96, 64)


@functools.cache
def _bad_inputs() -> list[bytes]:
    photo = photo_like(240, 160, seed=6)
    jpeg, png, webp = encoded(photo, "JPEG"), encoded(photo, "PNG"), encoded(photo, "WEBP")
    frames = [Image.new("RGB", (40, 40), (i * 60, 0, 0)) for i in range(3)]
    return [
        b"",
        b"hello",
        jpeg[: len(jpeg) * 2 // 3],
        png[: len(png) * 2 // 3],
        webp[: len(webp) * 2 // 3],
        jpeg[:200],
        encoded(Image.new("1", (20000, 20000))),
        _patched_jpeg(65_000, 65_000),
        _patched_webp(16_383, 16_383),
        encoded(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        encoded(Image.new("RGB", (40, 40)), "GIF"),
    ]


@pytest.mark.parametrize("index", range(11))
def test_check_image_refuses_what_decode_image_refuses(index):
    data = _bad_inputs()[index]
    with pytest.raises(ImageError) as decoded:
        decode_image(data, max_pixels=40_000_000)
    with pytest.raises(type(decoded.value)) as checked:
        check_image(data, max_pixels=40_000_000)
    assert str(checked.value) == str(decoded.value)


def test_check_image_sizes_like_decode_image_and_holds_fewer_pixels_for_jpeg():
    photo = photo_like(400, 240, seed=7)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned a quarter
    held: list[int] = []

    def hold(pixels: int):
        held.append(pixels)
        return contextlib.nullcontext()

    for data in (
        encoded(photo, "JPEG", exif=exif),
        encoded(photo, "PNG"),
        encoded(photo, "WEBP"),
        encoded(photo, "TIFF"),
        encoded(photo, "BMP"),
    ):
        assert check_image(data, hold=hold) == decode_image(data).size
    assert held == [400 * 240 // 64] + [400 * 240] * 4  # the JPEG is checked at 1/8 scale


def test_pixel_budget_bounds_the_pixels_decoded_at_once():
    budget = PixelBudget(100)
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def decode(pixels: int) -> None:
        with budget.hold(pixels):
            with lock:
                in_flight[0] += pixels
                most[0] = max(most[0], in_flight[0])
            time.sleep(0.02)
            with lock:
                in_flight[0] -= pixels

    threads = [threading.Thread(target=decode, args=(p,)) for p in [40, 40, 40, 30, 30, 250, 10] * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most[0] <= 100 + 150  # the one larger than the budget runs alone (it holds all of it)
    assert not any(thread.is_alive() for thread in threads)
