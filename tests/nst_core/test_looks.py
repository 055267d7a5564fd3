"""Each look, painted by the real engine at a tiny size, differs from the others the way its name says."""

from __future__ import annotations

import functools

import pytest
import torch
from PIL import Image

from nst_core.features import VGG19Features, build_vgg19
from nst_core.losses import gram_matrix
from nst_core.tensors import image_to_tensor
from nst_shared.images import load_image, resize
from nst_shared.looks import LOOK_NAMES
from nst_shared.params import TransferParams
from tests.conftest import ROOT

# Three scales of 20 steps from 128 px: the least the steering measures (calibration.MIN_MEASURED_*).
SIZE_PX, STEPS, SCALES, COARSE_PX = 160, 60, 3, 128
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
            params = TransferParams(
                look=look, max_size=SIZE_PX, steps=STEPS, scales=SCALES, min_scale_size=COARSE_PX, seed=0
            )
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
