"""Generated pictures that look like photographs to an encoder (smooth light, soft shapes, texture and sensor
noise), for tests and benches that need ordinary files of realistic size and entropy."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo_like(width: int, height: int, *, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    image = np.empty((height, width, 3))
    for channel in range(3):  # light falling across the scene
        image[..., channel] = rng.uniform(40, 200) + rng.uniform(-80, 80) * y + rng.uniform(-40, 40) * x
    for _ in range(int(rng.integers(3, 9))):  # soft shapes
        cx, cy, radius = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.4)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / radius**2)
        image += blob[..., None] * rng.uniform(-90, 90, 3)
    for _ in range(3):  # texture
        fx, fy, phase = rng.uniform(5, 80), rng.uniform(5, 80), rng.uniform(0, 6.3)
        image += (np.sin(fx * x + fy * y + phase) * rng.uniform(2, 15))[..., None]
    image += rng.normal(0, rng.uniform(2, 8), image.shape)  # sensor noise
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()
