"""What checking one upload costs the API: `decode_image` (the full decode the API used to do) against
`check_image` (what it does now: a JPEG's skeleton, its headers without the entropy-coded data, decoded at
1/8 scale; the same refusals), per format, on one large photo-like
picture. Each measurement runs in a fresh process, so its peak RSS is its own.

    .venv/bin/python bench/upload_check_bench.py [--megapixels 24]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(path: str, how: str) -> dict:
    """In this process: peak RSS growth and time of one check of the file at `path`."""
    from nst_shared.images import check_image, decode_image

    data = Path(path).read_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    (decode_image if how == "decode_image" else check_image)(data, max_pixels=100_000_000)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"ms": elapsed * 1000, "peak_mb": (peak - before) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, default=24.0)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    from PIL import Image

    from tests.pictures import encoded, photo_like

    width = int((args.megapixels * 1e6 * 1.5) ** 0.5)
    height = int(width / 1.5)
    picture = photo_like(width // 4, height // 4, seed=1).resize((width, height), Image.Resampling.BICUBIC)
    print(
        f"{width}x{height} ({width * height / 1e6:.1f} MP); peak RSS growth and time of one check, each in "
        "a fresh process"
    )
    print(
        f"{'format':6} {'file MB':>8} {'decode_image MB':>16} {'check_image MB':>15} {'decode ms':>10} {'check ms':>9}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for label, fmt, options in (
            ("JPEG", "JPEG", {"quality": 90}),
            ("JPEG p", "JPEG", {"quality": 90, "progressive": True}),
            ("PNG", "PNG", {}),
            ("WEBP", "WEBP", {"quality": 90}),
        ):
            path = Path(folder) / f"picture-{label.replace(' ', '')}.{fmt.lower()}"
            path.write_bytes(encoded(picture, fmt, **options))
            row = {}
            for how in ("decode_image", "check_image"):
                out = subprocess.run(
                    [sys.executable, __file__, "--measure", str(path), how], capture_output=True, text=True, check=True
                )
                row[how] = json.loads(out.stdout)
            print(
                f"{label:6} {path.stat().st_size / 2**20:8.1f} {row['decode_image']['peak_mb']:16.0f} "
                f"{row['check_image']['peak_mb']:15.0f} {row['decode_image']['ms']:10.0f} "
                f"{row['check_image']['ms']:9.0f}"
            )


if __name__ == "__main__":
    main()
