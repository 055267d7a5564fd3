"""Art controls in the engine: style masks (guided Gram matrices, the content kept where no mask reaches) and
colour modes, measured on VGG features and colour statistics of real runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nst_core import colors
from nst_core.losses import gram_matrix
from nst_core.tensors import image_to_tensor
from nst_shared.errors import EmptyMask, InvalidParameter
from nst_shared.params import TransferParams
from tests.nst_core.conftest import picture

WIDTH, HEIGHT = 96, 64
PARAMS = TransferParams(max_size=WIDTH, steps=15, scales=1, seed=0, style_weight=50)
LAYERS = ["relu1_1", "relu2_1", "relu3_1"]


def stripes(
    horizontal: bool, colours: tuple[tuple[int, int, int], tuple[int, int, int]], period: int, size: int = 96
) -> Image.Image:
    """Two colours in stripes: a style whose Gram matrices no photo has."""
    y, x = np.mgrid[0:size, 0:size]
    on = ((y if horizontal else x) // (period // 2)) % 2 == 0
    pixels = np.where(on[..., None], np.array(colours[0]), np.array(colours[1]))
    return Image.fromarray(pixels.astype(np.uint8))


RED = stripes(True, ((220, 30, 30), (20, 20, 20)), 8)
BLUE = stripes(False, ((30, 60, 230), (240, 240, 240)), 12)


def half(left: bool) -> Image.Image:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[:, : WIDTH // 2] = 255
    return Image.fromarray(mask if left else 255 - mask, mode="L")


def style_distance(engine, region: Image.Image, style: Image.Image) -> float:
    """Sum over layers of the relative squared difference of Gram matrices."""
    with torch.no_grad():
        a = engine.net(image_to_tensor(region, engine.device), LAYERS)
        b = engine.net(image_to_tensor(style, engine.device), LAYERS)
    return sum(float(((gram_matrix(a[n]) - gram_matrix(b[n])).norm() / gram_matrix(b[n]).norm()) ** 2) for n in LAYERS)


def halves(image: Image.Image) -> tuple[Image.Image, Image.Image]:
    # Away from the border by more than relu3_1's reach into the other half.
    return image.crop((0, 0, 36, HEIGHT)), image.crop((WIDTH - 36, 0, WIDTH, HEIGHT))


def test_masked_styles_paint_their_own_regions(engine):
    content = picture(WIDTH, HEIGHT, 3)
    out = engine.stylize(content, [RED, BLUE], PARAMS, style_masks=[half(True), half(False)]).image
    left, right = halves(out)
    left_before, right_before = halves(content)
    # Each half moved toward its own style...
    assert style_distance(engine, left, RED) < 0.8 * style_distance(engine, left_before, RED)
    assert style_distance(engine, right, BLUE) < 0.8 * style_distance(engine, right_before, BLUE)
    # ...and each is nearer its own style than the other half is: not toward the other's.
    assert style_distance(engine, left, RED) < 0.8 * style_distance(engine, right, RED)
    assert style_distance(engine, right, BLUE) < 0.8 * style_distance(engine, left, BLUE)


def test_unmasked_region_keeps_the_content(engine):
    content = picture(WIDTH, HEIGHT, 4)
    out = np.asarray(engine.stylize(content, [RED], PARAMS, style_masks=[half(True)]).image, dtype=float)
    photo = np.asarray(content, dtype=float)
    # Past the feathered edge (a Gaussian of 1% of the long side) the right half is the photo, pixel for pixel.
    assert np.abs(out[:, WIDTH // 2 + 6 :] - photo[:, WIDTH // 2 + 6 :]).max() <= 1
    assert np.abs(out[:, : WIDTH // 2 - 6] - photo[:, : WIDTH // 2 - 6]).mean() > 10


def test_white_mask_is_no_mask(engine):
    content, white = picture(WIDTH, HEIGHT, 5), Image.new("L", (20, 10), 255)
    params = PARAMS.replace(steps=3)
    plain = engine.stylize(content, [BLUE], params).image
    masked = engine.stylize(content, [BLUE], params, style_masks=[white]).image
    assert np.abs(np.asarray(plain, dtype=float) - np.asarray(masked, dtype=float)).max() <= 2


def test_thin_mask_still_paints(engine):
    content, stripe = picture(WIDTH, HEIGHT, 6), np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    stripe[28:36] = 255  # 8 px: half a relu5_1 cell
    out = engine.stylize(content, [RED], PARAMS, style_masks=[Image.fromarray(stripe)]).image
    changed = np.abs(np.asarray(out, dtype=float) - np.asarray(content, dtype=float)).mean(axis=(1, 2))
    assert changed[28:36].mean() > 10 and changed[:20].max() <= 1


def test_bad_masks_are_refused(engine):
    content = picture(WIDTH, HEIGHT)
    with pytest.raises(InvalidParameter, match="style_mask: 2 mask"):
        engine.stylize(content, [RED], PARAMS, style_masks=[half(True), half(False)])
    with pytest.raises(InvalidParameter, match="style_mask: 1 mask"):
        engine.stylize(content, [RED, BLUE], PARAMS, style_masks=[half(True)])
    with pytest.raises(EmptyMask, match="style mask 2 is black everywhere"):
        engine.stylize(content, [RED, BLUE], PARAMS, style_masks=[half(True), Image.new("L", (8, 8), 0)])


def colour_distance(image: Image.Image, reference: Image.Image) -> float:
    (mean_a, cov_a), (mean_b, cov_b) = colors.color_stats(image), colors.color_stats(reference)
    return float(np.linalg.norm(mean_a - mean_b) + np.linalg.norm(cov_a - cov_b))


def test_match_moves_colours_toward_the_content(engine):
    warm = np.asarray(picture(WIDTH, HEIGHT, 7), dtype=float) * [1.0, 0.6, 0.3]
    content = Image.fromarray(warm.astype(np.uint8))
    params = PARAMS.replace(steps=10)
    painted = engine.stylize(content, [BLUE], params).image
    matched = engine.stylize(content, [BLUE], params.replace(color_mode="match")).image
    assert colour_distance(matched, content) < 0.5 * colour_distance(painted, content)


def test_match_colors_gives_the_content_mean_and_covariance():
    style, content = (
        picture(64, 64, 1),
        Image.fromarray((np.asarray(picture(48, 40, 2), dtype=float) * [0.9, 0.5, 0.2] + 20).astype(np.uint8)),
    )
    mean, cov = colors.color_stats(colors.match_colors(style, content))
    want_mean, want_cov = colors.color_stats(content)
    assert np.abs(mean - want_mean).max() < 0.01 and np.abs(cov - want_cov).max() < 0.002
