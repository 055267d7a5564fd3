"""Blockwise evaluation (nst_core/objective.py): the same loss and gradient as the whole image, and no seams."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from nst_core import transfer
from nst_core.blocks import block_grid
from nst_core.features import layer_stride, receptive_field_px
from nst_core.objective import (
    LossTerms,
    Network,
    StyleTarget,
    evaluate_blocks,
    evaluate_whole,
    features_by_blocks,
    relative_to_photo,
)
from nst_core.progress import StopTransfer
from nst_core.tensors import image_to_tensor
from nst_core.transfer import StyleTransfer
from nst_shared.memory import BLOCK_ALIGN_PX, BLOCK_HALO_PX
from nst_shared.params import STYLE_LAYER_WEIGHTS, TransferParams
from tests.nst_core.conftest import picture

STYLE_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
# 168 x 136 in cores of 48: neither side divides evenly, and every block's halo is clipped somewhere.
WIDTH, HEIGHT, GRID = 168, 136, (4, 3)


@pytest.fixture(scope="module")
def fp32_net() -> Network:
    return StyleTransfer(device="cpu", precision="fp32").net


def terms_of(net: Network, which: str) -> LossTerms:
    content = image_to_tensor(picture(WIDTH, HEIGHT, 3))
    style = image_to_tensor(picture(160, 160, 4))
    with torch.no_grad():
        target = net(content, ["relu4_2"])["relu4_2"]
        style_feats = net(style, STYLE_LAYERS)
    from nst_core.losses import gram_matrix

    return LossTerms(
        content={"relu4_2": (1.0, target)} if which == "content" else {},
        style={n: [StyleTarget(15 * w, gram_matrix(style_feats[n]))] for n, w in zip(STYLE_LAYERS, STYLE_LAYER_WEIGHTS)}
        if which == "style"
        else {},
        tv_weight=0.5 if which == "tv" else 0.0,
    )


def masked_terms_of(net: Network) -> LossTerms:
    """Two styles, each matched over its own region (a soft left half, a thin stripe): guided Gram matrices."""
    from nst_core import masks
    from nst_core.losses import gram_matrix

    left = torch.zeros(1, 1, HEIGHT, WIDTH)
    left[..., : WIDTH // 2] = 1.0
    left[..., WIDTH // 2 : WIDTH // 2 + 16] = 0.4
    stripe = torch.zeros(1, 1, HEIGHT, WIDTH)
    stripe[..., 50:58, :] = 1.0
    targets: dict[str, list[StyleTarget]] = {n: [] for n in STYLE_LAYERS}
    for seed, mask in ((4, left), (8, stripe)):
        with torch.no_grad():
            feats = net(image_to_tensor(picture(96, 96, seed)), STYLE_LAYERS)
        for n, w in zip(STYLE_LAYERS, STYLE_LAYER_WEIGHTS):
            targets[n].append(StyleTarget(15 * w, gram_matrix(feats[n]), masks.at_layer(mask, n)))
    return LossTerms(content={}, style=targets, tv_weight=0.0)


@pytest.mark.parametrize("which", ["content", "style", "masked"])
def test_relative_weights_by_blocks_equal_whole_image(fp32_net, which):
    """A print's weights are made relative to the photo as a screen-size picture's are (guided ones too)."""
    terms = masked_terms_of(fp32_net) if which == "masked" else terms_of(fp32_net, which)
    photo = image_to_tensor(picture(WIDTH, HEIGHT, 3))
    whole = relative_to_photo(fp32_net, photo, terms, None)
    blocks = relative_to_photo(fp32_net, photo, terms, block_grid(WIDTH, HEIGHT, GRID))
    pairs = [(whole.content[n][0], blocks.content[n][0]) for n in terms.content] + [
        (a.weight, b.weight) for n in terms.style for a, b in zip(whole.style[n], blocks.style[n])
    ]
    assert pairs
    for (a, b), original in zip(
        pairs, [w for w, _ in terms.content.values()] + [t.weight for n in terms.style for t in terms.style[n]]
    ):
        assert a != original  # made relative: the photo's own loss is far from 1
        assert abs(a - b) / a < 1e-3


@pytest.mark.parametrize("which, part", [("content", 0), ("style", 1), ("tv", 2), ("masked", 1)])
def test_blockwise_loss_and_gradient_equal_whole_image(fp32_net, which, part):
    terms = masked_terms_of(fp32_net) if which == "masked" else terms_of(fp32_net, which)
    image = image_to_tensor(picture(WIDTH, HEIGHT, 5)).requires_grad_()
    whole = evaluate_whole(fp32_net, image, terms)
    whole_grad, image.grad = image.grad, None
    grid = block_grid(WIDTH, HEIGHT, GRID)
    assert len(grid) == 12  # 4 x 3: the 8 px left at the right join the block before
    blocks = evaluate_blocks(fp32_net, image, terms, grid)
    assert whole[part] > 0
    assert abs(blocks[part] - whole[part]) / whole[part] < 1e-3
    assert abs(blocks[3] - whole[3]) / whole[3] < 1e-3
    assert ((image.grad - whole_grad).norm() / whole_grad.norm()).item() < 1e-3


def test_content_features_by_blocks_equal_whole_image(fp32_net):
    image = image_to_tensor(picture(WIDTH, HEIGHT, 6))
    with torch.no_grad():
        whole = fp32_net(image, ["relu4_2", "relu5_1"])
    by_blocks = features_by_blocks(fp32_net, image, ["relu4_2", "relu5_1"], block_grid(WIDTH, HEIGHT, GRID))
    for name in whole:
        # Relative to the layer's scale: convolution algorithms differ by CPU in the last bits of each sum.
        error = (by_blocks[name] - whole[name]).abs().max() / whole[name].abs().max()
        assert error < 1e-5, (name, float(error))


def test_block_cores_tile_the_image_on_the_pooling_grid():
    grid = block_grid(WIDTH, HEIGHT, GRID)
    covered = np.zeros((HEIGHT, WIDTH), dtype=int)
    for block in grid:
        covered[block.rows.start : block.rows.stop, block.cols.start : block.cols.stop] += 1
        assert block.rows.start % BLOCK_ALIGN_PX == 0 and block.cols.outer_start % BLOCK_ALIGN_PX == 0
    assert (covered == 1).all()
    # The halo reaches as deep as the network's zero padding changes relu5_1: half its receptive field, aligned.
    assert receptive_field_px("relu5_1") // 2 <= BLOCK_HALO_PX and layer_stride("relu5_1") == BLOCK_ALIGN_PX


def test_stylize_in_blocks_reports_blocks_and_stops_within_one():
    engine = StyleTransfer(device="cpu", block_px=48)
    seen = []

    def stop_in_second_step(progress):
        seen.append(progress)
        if progress.step == 1 and progress.block == 3:
            raise StopTransfer()

    params = TransferParams(max_size=128, steps=5, scales=1, preview_every=1)
    result = engine.stylize(picture(128, 96), [picture(96, 96, 1)], params, callback=stop_in_second_step)
    assert result.stopped and result.steps_done == 1 and result.image.size == (128, 96)
    assert [(p.step, p.block, p.blocks) for p in seen] == [(1, 0, 6), (1, 1, 6), (1, 2, 6), (1, 3, 6)]


def border_energy_ratio(image, content, borders_x, borders_y) -> float:
    """Of what the painting changed: the mean squared difference across block borders over that everywhere."""
    x = np.asarray(image, dtype=np.float64) - np.asarray(content, dtype=np.float64)
    across_cols = ((x[:, 1:] - x[:, :-1]) ** 2).mean(axis=(0, 2))  # between column c - 1 and c
    across_rows = ((x[1:] - x[:-1]) ** 2).mean(axis=(1, 2))
    border = np.concatenate([across_cols[[b - 1 for b in borders_x]], across_rows[[b - 1 for b in borders_y]]])
    return border.mean() / np.concatenate([across_cols, across_rows]).mean()


def test_stylize_in_blocks_leaves_no_seams(monkeypatch):
    # A small picture in six blocks. The same engine with blocks cut without halos paints seams (the check
    # sees them: ~1.9 here); with the halos and the global loss the borders are smoother than the average.
    content, style = picture(96, 72, 7), picture(96, 96, 8)
    params = TransferParams(max_size=96, steps=8, scales=1, seed=0, style_weight=50)
    engine = StyleTransfer(device="cpu", block_px=32)
    borders = ([32, 64], [32])  # 72 rows: the 8 left under 64 join the block above
    assert border_energy_ratio(engine.stylize(content, [style], params).image, content, *borders) < 1.0
    monkeypatch.setattr(transfer, "block_grid", functools.partial(block_grid, halo_px=0))
    assert border_energy_ratio(engine.stylize(content, [style], params).image, content, *borders) > 1.5


def test_the_first_evaluation_of_a_scale_in_blocks_can_be_stopped_between_blocks():
    # Two scales: 64 px whole, then 128 px in six blocks. A stop asked for while the large scale's first
    # evaluation runs (at print size it takes minutes) ends the run after one block, not after the evaluation.
    engine = StyleTransfer(device="cpu", block_px=80)
    seen = []

    def stop_on_the_large_scale(progress):
        seen.append(progress)
        if progress.scale == 2:
            raise StopTransfer()

    params = TransferParams(max_size=128, steps=6, scales=2, min_scale_size=64, preview_every=0)
    result = engine.stylize(picture(128, 96), [picture(96, 96, 1)], params, callback=stop_on_the_large_scale)
    first = next(p for p in seen if p.scale == 2)
    assert result.stopped and (first.step, first.block) == (3, 1)  # 3 steps done on the small scale
    assert first.total_loss == seen[-2].total_loss  # the latest picture's losses, not made up
