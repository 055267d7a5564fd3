"""Colour preservation: style transfer on luminance only, then the content's own colours put back."""

from __future__ import annotations

import numpy as np
from PIL import Image


def luminance_image(image: Image.Image) -> Image.Image:
    """The image's luminance (ITU-R 601 Y) as a grey RGB image."""
    return image.convert("L").convert("RGB")


def match_luminance(style: Image.Image, content: Image.Image) -> Image.Image:
    """Shift and scale the style's luminance to the content's mean and spread, so tones match."""
    s = np.asarray(style.convert("L"), dtype=np.float64)
    c = np.asarray(content.convert("L"), dtype=np.float64)
    matched = (s - s.mean()) * (c.std() / max(s.std(), 1e-6)) + c.mean()
    return Image.fromarray(np.clip(matched + 0.5, 0, 255).astype(np.uint8), mode="L").convert("RGB")


def transfer_chroma(output: Image.Image, content: Image.Image) -> Image.Image:
    """The output's luminance with the content's chroma (YCbCr), at the output's size."""
    y, _, _ = output.convert("YCbCr").split()
    _, cb, cr = content.resize(output.size, Image.Resampling.BICUBIC).convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")
