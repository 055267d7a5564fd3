"""Writes the example images: a CC0 photograph from scikit-image's data and style images drawn here.

Run with the dev extra installed: `.venv/bin/python examples/make_examples.py`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent


def photo() -> None:
    from skimage import data  # chelsea the cat: CC0, per scikit-image's data README

    Image.fromarray(data.chelsea()).save(HERE / "chelsea.jpg", quality=90)


def swirls(size: int = 512, seed: int = 1) -> Image.Image:
    """Thick curved brush strokes in a night-blue and gold palette, following a swirling flow field."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (18, 32, 84))
    draw = ImageDraw.Draw(image)
    palette = [
        (24, 52, 120),
        (38, 78, 160),
        (70, 110, 190),
        (20, 36, 90),
        (230, 200, 90),
        (250, 230, 140),
        (120, 160, 210),
        (14, 26, 60),
    ]
    centres = rng.uniform(0, size, (5, 2))
    for _ in range(2600):
        x, y = rng.uniform(0, size, 2)
        colour = palette[rng.integers(len(palette))]
        if colour[0] > 200 and rng.random() < 0.6:  # gold strokes gather around the swirl centres
            cx, cy = centres[rng.integers(len(centres))]
            x, y = cx + rng.normal(0, 25), cy + rng.normal(0, 25)
        width = int(rng.integers(3, 8))
        points = [(x, y)]
        for _ in range(int(rng.integers(6, 14))):
            cx, cy = min(centres, key=lambda c: (c[0] - x) ** 2 + (c[1] - y) ** 2)
            angle = math.atan2(y - cy, x - cx) + math.pi / 2 + 0.3 * math.sin(x / 40)
            x, y = x + 6 * math.cos(angle), y + 6 * math.sin(angle)
            points.append((x, y))
        jitter = tuple(int(np.clip(c + rng.integers(-18, 18), 0, 255)) for c in colour)
        draw.line(points, fill=jitter, width=width, joint="curve")
    return image.filter(ImageFilter.SMOOTH)


def mosaic(size: int = 512, seed: int = 2) -> Image.Image:
    """Bold circles, bars and triangles over colour fields, loosely after Kandinsky's compositions."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (236, 222, 190))
    draw = ImageDraw.Draw(image)
    palette = [
        (200, 40, 40),
        (30, 60, 150),
        (240, 190, 40),
        (20, 20, 20),
        (40, 130, 90),
        (230, 110, 40),
        (140, 60, 140),
    ]
    for _ in range(18):
        x0, y0 = rng.uniform(-100, size, 2)
        draw.rectangle(
            [x0, y0, x0 + rng.uniform(60, 220), y0 + rng.uniform(60, 220)],
            fill=palette[rng.integers(len(palette))] + (),
        )
    for _ in range(40):
        x, y, r = *rng.uniform(0, size, 2), rng.uniform(8, 70)
        draw.ellipse(
            [x - r, y - r, x + r, y + r],
            fill=palette[rng.integers(len(palette))],
            outline=(20, 20, 20),
            width=int(rng.integers(2, 6)),
        )
    for _ in range(30):
        x0, y0, x1, y1 = rng.uniform(0, size, 4)
        draw.line([x0, y0, x1, y1], fill=(20, 20, 20), width=int(rng.integers(2, 7)))
    for _ in range(12):
        pts = [tuple(rng.uniform(0, size, 2)) for _ in range(3)]
        draw.polygon(pts, fill=palette[rng.integers(len(palette))], outline=(20, 20, 20))
    return image


def main() -> None:
    photo()
    swirls().save(HERE / "swirls.jpg", quality=90)
    mosaic().save(HERE / "mosaic.jpg", quality=90)


if __name__ == "__main__":
    main()
