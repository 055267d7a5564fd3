from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nst_core import flow
from nst_core.objective import TemporalTerm
from nst_core.video import ClipPainter
from nst_shared.errors import InvalidParameter
from nst_shared.params import TransferParams
from tests.nst_core.conftest import picture

CLIP = TransferParams(max_size=64, steps=6, frame_steps=3, scales=1, seed=3)


def smooth(width: int, height: int, seed: int = 0) -> Image.Image:
    """A picture the flow can follow: soft blobs, no per-pixel noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.full((height, width, 3), 100.0)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, 10)
        image += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r**2)[..., None] * rng.uniform(-120, 120, 3)
    return Image.fromarray(image.clip(0, 255).astype(np.uint8))


def shifted(image: Image.Image, dx: int) -> Image.Image:
    """`image` moved `dx` pixels to the right (the left edge repeated)."""
    array = np.asarray(image)
    return Image.fromarray(np.concatenate([np.repeat(array[:, :1], dx, axis=1), array[:, :-dx]], axis=1))


def test_flow_warp_round_trip_on_a_shifted_image():
    before = smooth(96, 96)
    after = shifted(before, 3)
    backward = flow.flow(after, before)
    assert np.median(backward[..., 0]) == pytest.approx(-3, abs=0.3)
    warped = np.asarray(flow.warp(before, backward), dtype=np.float64)
    inner = (slice(8, -8), slice(8, -8))
    error = np.abs(warped[inner] - np.asarray(after, dtype=np.float64)[inner]).mean()
    assert error < 0.3 * np.abs(np.asarray(before, dtype=np.float64) - np.asarray(after))[inner].mean()


def test_certainty_marks_a_disoccluded_area():
    # A square moves 8 px right over a still background: the strip it uncovers has no source in the frame before.
    background = np.asarray(smooth(96, 96, seed=1)).copy()
    square = np.asarray(smooth(24, 24, seed=2)) // 2 + 100
    before, after = background.copy(), background.copy()
    before[36:60, 30:54] = square
    after[36:60, 38:62] = square
    backward = flow.flow(Image.fromarray(after), Image.fromarray(before))
    forward = flow.flow(Image.fromarray(before), Image.fromarray(after))
    trusted = flow.certainty(forward, backward)
    assert trusted[40:56, 31:36].mean() < 0.5  # uncovered by the square
    assert trusted[72:92, 4:92].mean() > 0.95  # still background far from it


def test_temporal_loss_is_zero_at_the_warped_frame():
    target = torch.rand(1, 3, 8, 8)
    term = TemporalTerm(100.0, target, torch.ones(1, 1, 8, 8))
    assert float(term.loss(target.clone())) == 0.0
    assert float(term.loss(target + 0.1)) == pytest.approx(100.0 * 0.01, rel=1e-4)
    assert float(TemporalTerm(100.0, target, torch.zeros(1, 1, 8, 8)).loss(target + 0.1)) == 0.0


def clip(frames: int) -> list[Image.Image]:
    base = smooth(88, 72, seed=4)
    return [shifted(base, 1 + 2 * i) for i in range(frames)]


def test_resume_paints_the_frame_an_uninterrupted_run_does(engine):
    style = picture(64, 64, 1)
    frames = clip(3)
    whole = ClipPainter(engine, [style], CLIP)
    results = [whole.paint(f) for f in frames]
    resumed = ClipPainter(engine, [style], CLIP)
    resumed.resume(
        first_frame=frames[0],
        previous_frame=frames[1],
        previous_painted=results[1].image,
        style_factor=results[0].style_factor,
    )
    assert np.array_equal(np.asarray(resumed.paint(frames[2]).image), np.asarray(results[2].image))


def test_later_frames_run_frame_steps_from_the_warped_painting(engine):
    painter = ClipPainter(engine, [picture(64, 64, 1)], CLIP.replace(color_mode="match"))
    first, second = (painter.paint(f) for f in clip(2))
    assert first.steps_done == 6 and second.steps_done == 3 and second.image.size == first.image.size == (64, 52)
    # Held to the first: the second painting differs from it far less than a painting of its own would.
    alone = engine.stylize(clip(2)[1], [picture(64, 64, 1)], CLIP.replace(color_mode="match")).image
    warped = np.asarray(flow.warp(first.image, flow.flow(*(f.resize((64, 52)) for f in reversed(clip(2))))), float)
    assert np.abs(np.asarray(second.image, float) - warped).mean() < np.abs(np.asarray(alone, float) - warped).mean()


def test_first_frame_is_the_picture(engine):
    style = picture(64, 64, 1)
    frame = clip(1)[0]
    ours = ClipPainter(engine, [style], CLIP).paint(frame).image
    assert np.array_equal(np.asarray(ours), np.asarray(engine.stylize(frame, [style], CLIP).image))


def test_a_frame_of_another_size_is_refused(engine):
    painter = ClipPainter(engine, [picture(64, 64, 1)], CLIP)
    painter.paint(clip(1)[0])
    with pytest.raises(InvalidParameter, match="not the clip's"):
        painter.paint(smooth(80, 72))


def test_clip_past_the_whole_image_budget_is_refused(engine):
    target = flow.TemporalTarget(picture(64, 64), np.ones((64, 64), np.float32), 1.0)
    small_budget = type(engine)(device="cpu", block_px=32)
    with pytest.raises(InvalidParameter, match="whole"):
        small_budget.stylize(picture(64, 64), [picture(64, 64, 1)], CLIP, temporal=target)
