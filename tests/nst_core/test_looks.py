"""Each look, painted by the real engine at a tiny size, differs from the others the way its name says."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image

from nst_core.calibration import FACTOR_BOUNDS, PROBE_PX, REFERENCE_SHARE, style_factor
from nst_core.features import VGG19Features, build_vgg19
from nst_core.losses import gram_matrix
from nst_core.tensors import image_to_tensor
from nst_shared.images import load_image, resize
from nst_shared.looks import LOOK_NAMES
from nst_shared.params import TransferParams
from tests.conftest import ROOT

SIZE_PX, STEPS = 80, 24
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@functools.cache
def judge() -> VGG19Features:
    """A float32 network of its own, whatever precision the engine paints in."""
    return build_vgg19("caffe")


@torch.no_grad()
def distances(output: Image.Image, content: Image.Image, style: Image.Image) -> tuple[float, float]:
    """(relu4_2 distance to the content, mean Gram distance to the style over the style layers, each relative
    to the content's own)."""
    layers = (*STYLE_LAYERS, "relu4_2")
    out, photo, painting = (
        judge()(image_to_tensor(resize(img, output.size)), layers) for img in (output, content, style)
    )

    def mse(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.mean((a - b) ** 2))

    content_distance = mse(out["relu4_2"], photo["relu4_2"])
    style_distance = (
        sum(
            mse(gram_matrix(out[n]), gram_matrix(painting[n])) / mse(gram_matrix(photo[n]), gram_matrix(painting[n]))
            for n in STYLE_LAYERS
        )
        / 5
    )
    return content_distance, style_distance


PAIRS = (("chelsea", "swirls"), ("chelsea", "mosaic"))


@pytest.fixture(scope="module")
def painted(engine) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """For each pair, each look's distances; both pairs' styles differ in how far they are from the photo."""
    scores: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for photo, painting in PAIRS:
        content = load_image(ROOT / "examples" / f"{photo}.jpg")
        style = load_image(ROOT / "examples" / f"{painting}.jpg")
        scores[photo, painting] = {}
        for look in LOOK_NAMES:
            params = TransferParams(look=look, max_size=SIZE_PX, steps=STEPS, scales=2, min_scale_size=64, seed=0)
            image = engine.stylize(content, [style], params).image
            assert image.size[0] == SIZE_PX
            scores[photo, painting][look] = distances(image, content, style)
    return scores


@pytest.mark.parametrize("pair", PAIRS, ids="+".join)
def test_looks_move_away_from_the_photo_in_order(painted, pair):
    content = [painted[pair][look][0] for look in ("subtle", "balanced", "painterly", "texture")]
    assert content == sorted(content) and len(set(content)) == len(content), content


@pytest.mark.parametrize("pair", PAIRS, ids="+".join)
def test_painterly_matches_the_style_closer_than_subtle(painted, pair):
    assert painted[pair]["painterly"][1] < painted[pair]["subtle"][1]


def stripes(px: int = 160) -> Image.Image:
    """Black-and-white stripes: a style that takes a photo much further than a painting at the same weight."""
    y, x = np.mgrid[0:px, 0:px]
    return Image.fromarray(np.repeat(((np.sin((x + 0.6 * y) / 3.0) > 0) * 230 + 10)[..., None], 3, 2).astype(np.uint8))


def test_calibration_weakens_the_style_that_pulls_harder(engine):
    content = load_image(ROOT / "examples" / "chelsea.jpg")
    params = TransferParams(max_size=PROBE_PX, steps=1, scales=1, seed=0)  # the probe's own size
    factors = {
        name: engine.stylize(content, [style], params).style_factor
        for name, style in (("stripes", stripes()), ("swirls", load_image(ROOT / "examples" / "swirls.jpg")))
    }
    assert factors["stripes"] < 0.5 * factors["swirls"], factors


def test_calibration_leaves_the_reference_strength_alone_and_is_bounded():
    low, high = FACTOR_BOUNDS
    assert style_factor(REFERENCE_SHARE) == pytest.approx(1.0)
    assert style_factor(2 * REFERENCE_SHARE) < 1.0 < style_factor(REFERENCE_SHARE / 2)
    assert (style_factor(1e3), style_factor(0.0)) == (low, high)
