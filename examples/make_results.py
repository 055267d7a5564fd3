"""Paints the README's example results: the example photo in each example style, with the default parameters.

Run with the engine installed: `.venv/bin/python examples/make_results.py` (under a minute a picture on two CPU cores).
Each picture carries its parameters and seed (`nst info examples/chelsea_swirls.jpg`).
"""

from __future__ import annotations

import time
from pathlib import Path

from nst_core.transfer import StyleTransfer
from nst_shared import provenance
from nst_shared.images import decode_image
from nst_shared.params import TransferParams

HERE = Path(__file__).resolve().parent
STYLES = ("swirls", "mosaic")
JPEG_QUALITY = 90


def main() -> None:
    engine = StyleTransfer()
    # The CPU defaults (384 px, 120 steps) on every device, and a seed: a rerun in the same number format (the
    # engine picks bf16 or fp32 per machine; the picture records which) paints the same pictures.
    params = TransferParams(seed=0)
    content = (HERE / "chelsea.jpg").read_bytes()
    for name in STYLES:
        style = (HERE / f"{name}.jpg").read_bytes()
        started = time.perf_counter()
        result = engine.stylize(decode_image(content), [decode_image(style)], params)
        record = provenance.build(
            params,
            steps_done=result.steps_done,
            device=engine.device_name,
            precision=engine.precision,
            content=content,
            styles=[style],
        )
        output = HERE / f"chelsea_{name}.jpg"
        result.image.save(output, quality=JPEG_QUALITY, optimize=True, **provenance.save_options("JPEG", record))
        print(
            f"{output.name}: {result.image.width}x{result.image.height}, {result.steps_done} steps in "
            f"{time.perf_counter() - started:.0f} s on {engine.device_name} ({engine.precision})"
        )


if __name__ == "__main__":
    main()
