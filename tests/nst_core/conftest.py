from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nst_core.transfer import StyleTransfer


@pytest.fixture(scope="session")
def engine() -> StyleTransfer:
    return StyleTransfer(device="cpu")


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    """Gradients plus blocks plus noise: enough structure for VGG features to differ between images."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(x / (3 + seed)), np.cos(y / (4 + seed)), np.sin((x + y) / 7)], axis=-1) * 90 + 128
    base += rng.normal(0, 20, base.shape)
    return Image.fromarray(base.clip(0, 255).astype(np.uint8))
