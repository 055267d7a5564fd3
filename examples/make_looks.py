"""Writes the web page's look thumbnails: the example photo painted in the mosaic in each look.

Run with the engine installed: `.venv/bin/python examples/make_looks.py` (a few minutes on a CPU). Each
thumbnail is the look at its defaults, at a thumbnail's size, seeded so a rerun makes the same picture.
"""

from __future__ import annotations

from pathlib import Path

from nst_core.transfer import StyleTransfer
from nst_shared.images import load_image
from nst_shared.looks import LOOK_NAMES
from nst_shared.params import TransferParams

HERE = Path(__file__).resolve().parent
THUMBNAIL_PX = 256
JPEG_QUALITY = 82


def main() -> None:
    # The mosaic's shards grow visibly from look to look; under the swirls the four looked alike.
    content, style = load_image(HERE / "chelsea.jpg"), load_image(HERE / "mosaic.jpg")
    engine = StyleTransfer(device="cpu", precision="fp32")
    (HERE / "looks").mkdir(exist_ok=True)
    for look in LOOK_NAMES:
        params = TransferParams(look=look, max_size=THUMBNAIL_PX, seed=0)
        image = engine.stylize(content, [style], params).image
        image.save(HERE / "looks" / f"{look}.jpg", quality=JPEG_QUALITY, optimize=True)
        print(f"looks/{look}.jpg")


if __name__ == "__main__":
    main()
