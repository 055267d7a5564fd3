"""False refusals of the polyglot check: ordinary JPEG, PNG and WebP files of many sizes, generated to look
like photographs, decoded as the API decodes uploads; and every real polyglot case, which must stay refused.

    .venv/bin/python bench/polyglot_bench.py [--files 2000]   # the table (bench/README.md)
    .venv/bin/python bench/polyglot_bench.py --search          # a JPEG whose pixel data contains "<svg"

"old check" is the one this replaced: every marker searched in the whole file, compressed data included.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nst_shared.errors import ImageError
from nst_shared.images import decode_image
from nst_shared.polyglots import MARKERS
from tests.pictures import encoded, photo_like


def old_check_refuses(data: bytes) -> bool:
    lowered = data.lower()
    return any(marker in lowered for marker, _ in MARKERS)


def ordinary_files(count: int, seed: int):
    """(format, size, bytes): a third each of JPEG (quality 70-98), PNG and WebP, sides 48 to 2400 px."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        fmt = ("JPEG", "PNG", "WEBP")[i % 3]
        long_side = int(np.exp(rng.uniform(np.log(48), np.log(2400))))
        short_side = max(32, int(long_side * rng.uniform(0.5, 1.0)))
        width, height = (long_side, short_side) if rng.random() < 0.6 else (short_side, long_side)
        image = photo_like(width, height, seed=seed * 100_000 + i)
        options = {"quality": int(rng.integers(70, 99))} if fmt in ("JPEG", "WEBP") else {}
        yield fmt, (width, height), encoded(image, fmt, **options)


def polyglots() -> list[tuple[str, bytes]]:
    """The real polyglot cases (as in tests/nst_shared/test_images.py)."""
    from PIL import Image

    png = encoded(Image.new("RGB", (40, 40), (9, 9, 9)), "PNG")
    jpeg = encoded(photo_like(64, 48, seed=1), "JPEG")
    webp = encoded(photo_like(64, 48, seed=1), "WEBP")
    xmp_script = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><script>alert(1)</script></x:xmpmeta>'
    return [
        ("HTML after a PNG", png + b"<html><script>alert(1)</script></html>"),
        ("zip after a PNG", png + b"PK\x03\x04" + b"\x00" * 40),
        ("script in a JPEG comment", jpeg[:2] + b"\xff\xfe\x00\x20<script>alert(1)</script>....." + jpeg[2:]),
        ("PDF after a JPEG", jpeg + b"%PDF-1.4\n1 0 obj\n"),
        ("SVG after a JPEG", jpeg + b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
        ("script in a JPEG's XMP", encoded(photo_like(64, 48, seed=1), "JPEG", xmp=xmp_script)),
        ("script in a WebP's XMP", encoded(photo_like(64, 48, seed=1), "WEBP", xmp=xmp_script)),
        ("HTML after a WebP", webp + b"<!DOCTYPE html><p>hi"),
    ]


def run(count: int, seed: int) -> None:
    started = time.monotonic()
    files = Counter()
    refused = Counter()
    old = Counter()
    sizes: dict[str, list[int]] = {"JPEG": [], "PNG": [], "WEBP": []}
    for fmt, _, data in ordinary_files(count, seed):
        files[fmt] += 1
        sizes[fmt].append(len(data))
        old[fmt] += old_check_refuses(data)
        try:
            decode_image(data)
        except ImageError as exc:
            refused[fmt] += 1
            print(f"refused: {fmt} {len(data)} bytes: {exc}", file=sys.stderr)
    print(f"{'format':6} {'files':>6} {'median KB':>9} {'max KB':>7} {'refused':>8} {'old check':>9}")
    for fmt in ("JPEG", "PNG", "WEBP"):
        print(
            f"{fmt:6} {files[fmt]:6} {np.median(sizes[fmt]) / 1024:9.0f} {max(sizes[fmt]) / 1024:7.0f} "
            f"{refused[fmt]:8} {old[fmt]:9}"
        )
    total_mb = sum(sum(v) for v in sizes.values()) / 2**20
    print(
        f"all    {sum(files.values()):6} ({total_mb:.0f} MB)        {sum(refused.values()):8} "
        f"{sum(old.values()):9}   ({time.monotonic() - started:.0f} s)"
    )
    print("\nreal polyglots:")
    for name, data in polyglots():
        try:
            decode_image(data)
            verdict = "ACCEPTED (a miss)"
        except ImageError as exc:
            verdict = f"refused: {exc}"
        print(f"  {name:26} {verdict}")


def search(limit: int) -> None:
    """Seeds and qualities of a 1024x768 photo-like JPEG until its compressed pixel data contains "<svg"."""
    for seed in range(limit):
        image = photo_like(1024, 768, seed=seed)
        for quality in range(88, 97):
            data = encoded(image, "JPEG", quality=quality)
            at = data.lower().find(b"<svg")
            if at != -1:
                print(f"seed={seed} quality={quality}: {data[at : at + 4]!r} at byte {at} of {len(data)}")
                return
    print("none found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--search", action="store_true")
    args = parser.parse_args()
    if args.search:
        search(limit=5000)
    else:
        run(args.files, args.seed)


if __name__ == "__main__":
    main()
