"""Paints the README's example results: the example photo in each example style, with the default parameters.

Run with the engine installed (about a minute a picture on two CPU cores): `.venv/bin/python examples/make_results.py`.
"""

from __future__ import annotations

import time
from pathlib import Path

from nst_core.transfer import StyleTransfer
from nst_shared.images import load_image
from nst_shared.params import TransferParams

HERE = Path(__file__).resolve().parent
CONTENT = HERE / "chelsea.jpg"
STYLES = ("swirls", "mosaic")


def main() -> None:
    engine = StyleTransfer()
    # The CPU defaults (384 px, 120 steps) on every device, and a seed, so a rerun paints the same pictures.
    params = TransferParams(seed=0)
    content = load_image(CONTENT)
    for name in STYLES:
        started = time.perf_counter()
        result = engine.stylize(content, [load_image(HERE / f"{name}.jpg")], params)
        output = HERE / f"chelsea_{name}.jpg"
        result.image.save(output, quality=90)
        print(f"{output.name}: {result.image.width}x{result.image.height}, {result.steps_done} steps in "
              f"{time.perf_counter() - started:.0f} s on {engine.device_name} ({engine.precision})")


if __name__ == "__main__":
    main()
