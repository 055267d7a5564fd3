"""Spatial control (Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer", 2017, §4): masks
that say where each style paints, sized to every layer of every scale, and the content put back where none does.

A mask's luminance is its weight: white paints its style there, black keeps it out, grey blends. Masks are
stretched to the content's size. The loss is blind outside the masks only in its Gram terms: the content loss
alone does not hold an uncovered region's pixels (deep cells see far past a mask's edge, so strokes spill over),
so the finished picture is the content there, joined to the painting across a feathered edge.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.nn import functional as F

from nst_core.features import layer_stride

# The feathered edge between the painting and an uncovered region: a Gaussian of this fraction of the long side.
FEATHER_FRACTION = 0.01


def mask_tensor(mask: Image.Image) -> torch.Tensor:
    """The mask's luminance as weights (1, 1, H, W) in 0..1."""
    values = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(values)[None, None]


def at_size(mask: torch.Tensor, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """`mask` at `size` (width, height) on `device`: averaged over each output pixel's area when shrinking, so a
    thin stroke thins into small weights instead of vanishing between samples."""
    width, height = size
    shrinking = height * width < mask.shape[-2] * mask.shape[-1]
    mode = "area" if shrinking else "bilinear"
    resized = F.interpolate(mask, size=(height, width), mode=mode, align_corners=None if shrinking else False)
    return resized.clamp_(0.0, 1.0).to(device)


def at_layer(mask: torch.Tensor, layer: str) -> torch.Tensor:
    """A mask at image resolution averaged over each cell of `layer` (the features' own floor-divided size)."""
    stride = layer_stride(layer)
    return mask if stride == 1 else F.avg_pool2d(mask, kernel_size=stride, stride=stride)


def covers_everywhere(masks: Sequence[Image.Image]) -> bool:
    """True when the masks together are white at every pixel: nothing to composite."""
    return bool((_coverage(masks, masks[0].size) >= 1.0).all())


def composite(painting: Image.Image, content: Image.Image, masks: Sequence[Image.Image]) -> Image.Image:
    """The painting where the masks cover the picture, the content (at the painting's size) where they do not,
    blended across a feathered edge."""
    size = painting.size
    coverage = Image.fromarray(np.round(_coverage(masks, size) * 255.0).astype(np.uint8), mode="L")
    radius = max(1.0, FEATHER_FRACTION * max(size))
    feathered = coverage.filter(ImageFilter.GaussianBlur(radius))
    background = content.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    return Image.composite(painting.convert("RGB"), background, feathered)


def _coverage(masks: Sequence[Image.Image], size: tuple[int, int]) -> np.ndarray:
    """How much any style paints each pixel at `size`: the masks' weights summed, at most 1."""
    total = np.zeros((size[1], size[0]), dtype=np.float32)
    for mask in masks:
        total += np.asarray(mask.convert("L").resize(size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    return np.minimum(total, 1.0)
