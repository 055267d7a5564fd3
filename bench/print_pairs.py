"""The three shared pairs (../shared/images) painted at 512 px and at a print size, with the default parameters
and one seed, and a detail of each: the same region of the 512 px result enlarged beside the print's, so the
brushwork's scale can be judged. Writes into --out (never into the project: the pictures are not ours).

    .venv/bin/python bench/print_pairs.py --out /tmp/print-pairs [--sizes 512 2048] [--detail-px 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "images"
PAIRS = (("tiger", "starry"), ("neckarfront", "shipwreck"), ("cityscape", "compositionvii"))


def shared_picture(folder: str, name: str) -> Path:
    return next((SHARED / folder).glob(f"{name}.*"))


def detail(small, large, detail_px: int):
    """The centre `detail_px` square of `large` beside the same region of `small`, enlarged to match."""
    from PIL import Image

    factor = large.width / small.width
    left, top = (large.width - detail_px) // 2, (large.height - detail_px) // 2
    box = (left, top, left + detail_px, top + detail_px)
    region = small.crop(tuple(round(v / factor) for v in box))
    enlarged = region.resize((detail_px, detail_px), Image.Resampling.LANCZOS)
    both = Image.new("RGB", (2 * detail_px + 8, detail_px), "white")
    both.paste(enlarged, (0, 0))
    both.paste(large.crop(box), (detail_px + 8, 0))
    return both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--sizes", type=int, nargs=2, default=[512, 2048], metavar=("SMALL", "PRINT"))
    parser.add_argument("--detail-px", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from nst_core.transfer import StyleTransfer
    from nst_shared.images import load_image
    from nst_shared.params import TransferParams

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engine = StyleTransfer()
    print(f"{engine.device_name} ({engine.precision}), seed {args.seed}")
    for content_name, style_name in PAIRS:
        content = load_image(shared_picture("content", content_name))
        style = load_image(shared_picture("style", style_name))
        results = {}
        for size in args.sizes:
            started = time.perf_counter()
            result = engine.stylize(content, [style], TransferParams(max_size=size, seed=args.seed))
            results[size] = result.image
            result.image.save(out / f"{content_name}_{style_name}_{size}.png")
            print(
                f"{content_name} + {style_name} at {size} px: {result.image.width}x{result.image.height}, "
                f"{result.steps_done} steps in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        small, large = (results[s] for s in args.sizes)
        detail(small, large, args.detail_px).save(out / f"{content_name}_{style_name}_detail.png")


if __name__ == "__main__":
    main()
