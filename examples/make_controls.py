"""Writes the pictures of docs/controls.md with the real engine: style masks, and the three colour modes.

Run from the repository root: `.venv/bin/python examples/make_controls.py` (a few minutes on a CPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from nst_core.transfer import StyleTransfer
from nst_shared.params import COLOR_MODES, TransferParams

HERE = Path(__file__).resolve().parent
PANEL_PX = 300  # each picture's width in the strips
PARAMS = TransferParams(max_size=320, steps=90, seed=0)  # three scales of 30 steps: the strength is steered


def masks(size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """Swirls on the left, the mosaic on the right, blended across the middle; the cat's face left out."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    face = ((x - 0.55) / 0.3) ** 2 + ((y - 0.5) / 0.42) ** 2 < 1
    left = np.clip((0.6 - x) / 0.2, 0, 1) * ~face
    right = np.clip((x - 0.4) / 0.2, 0, 1) * ~face
    return tuple(Image.fromarray(np.round(m * 255).astype(np.uint8), mode="L") for m in (left, right))


def mask_map(swirls_mask: Image.Image, mosaic_mask: Image.Image) -> Image.Image:
    """The masks in one picture: blue where the swirls paint, red where the mosaic does, black for the photo."""
    blue, red = (np.asarray(m, dtype=np.uint8) for m in (swirls_mask, mosaic_mask))
    return Image.fromarray(np.stack([red, np.zeros_like(red), blue], axis=-1))


def strip(panels: list[tuple[str, Image.Image]]) -> Image.Image:
    """The pictures side by side at PANEL_PX wide, each captioned."""
    scaled = [
        (label, im.resize((PANEL_PX, round(im.height * PANEL_PX / im.width)), Image.Resampling.LANCZOS))
        for label, im in panels
    ]
    height = max(im.height for _, im in scaled)
    out = Image.new("RGB", (PANEL_PX * len(scaled), height + 18), "white")
    draw = ImageDraw.Draw(out)
    for i, (label, im) in enumerate(scaled):
        out.paste(im, (i * PANEL_PX, 18))
        draw.text((i * PANEL_PX + 4, 3), label, fill="black")
    return out


def main() -> None:
    engine = StyleTransfer()
    photo, swirls, mosaic = (Image.open(HERE / n).convert("RGB") for n in ("chelsea.jpg", "swirls.jpg", "mosaic.jpg"))
    swirls_mask, mosaic_mask = masks(photo.size)
    masked = engine.stylize(photo, [swirls, mosaic], PARAMS, style_masks=[swirls_mask, mosaic_mask]).image
    strip(
        [("photo", photo), ("masks: swirls blue, mosaic red", mask_map(swirls_mask, mosaic_mask)), ("painted", masked)]
    ).save(HERE / "controls-masks.jpg", quality=88)
    modes = [
        (f"color_mode={mode}", engine.stylize(photo, [swirls], PARAMS.replace(color_mode=mode)).image)
        for mode in COLOR_MODES
    ]
    strip(modes).save(HERE / "controls-colours.jpg", quality=88)


if __name__ == "__main__":
    main()
