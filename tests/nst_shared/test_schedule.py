"""The plan of a transfer (scales and steps, print sizes included), its cost, and its memory plan: torch-free."""

from __future__ import annotations

from nst_shared.memory import MIN_HISTORY_PAIRS, plan_memory
from nst_shared.params import TransferParams
from nst_shared.schedule import PRINT_FROM_PX, Scale, plan_cost, plan_scales, scale_sizes, split_steps, style_longest_px

GB = 2**30


def test_plan_up_to_1024_px_is_even_over_geometric_scales():
    plan = plan_scales((768, 512), TransferParams(max_size=384))
    assert (
        [s.size for s in plan]
        == scale_sizes((384, 256), scales=3, min_size=192)
        == [(192, 128), (272, 181), (384, 256)]
    )
    assert [s.steps for s in plan] == [40, 40, 40]


def test_plan_at_print_size_doubles_with_a_third_of_the_steps_each():
    plan = plan_scales((1200, 800), TransferParams(max_size=4096))
    assert [s.size for s in plan] == [(192, 128), (443, 295), (1024, 683), (2048, 1365), (4096, 2731)]
    assert [s.steps for s in plan] == [35, 35, 35, 11, 4] and sum(s.steps for s in plan) == 120
    # Between 1024 and 2048 the ordinary scales end at half the print size: 1500 -> 750 -> 1500.
    assert [s.size[0] for s in plan_scales((1500, 1000), TransferParams(max_size=1500))][-2:] == [750, 1500]
    assert max(plan_scales((1200, 800), TransferParams(max_size=PRINT_FROM_PX))[-1].size) == PRINT_FROM_PX


def test_plan_leaves_out_scales_without_steps_and_keeps_single_scale():
    plan = plan_scales((1200, 800), TransferParams(max_size=4096, steps=3))
    assert [s.steps for s in plan] == [1, 1, 1]
    single = plan_scales((1200, 800), TransferParams(max_size=2048, scales=1, steps=7))
    assert single == [Scale(2048, 1365, 7)]
    assert split_steps(10, [1, 1, 1]) == [4, 3, 3] and split_steps(5, [1, 1 / 3]) == [4, 1]


def test_style_is_not_enlarged_past_its_own_resolution():
    assert style_longest_px((800, 552), 384, 1.0) == 384
    assert style_longest_px((800, 552), 4096, 1.0) == 800
    assert style_longest_px((800, 552), 4096, 2.0) == 1600  # asked for strokes twice the painting's
    assert style_longest_px((800, 552), 4096, 0.1) == 410


def test_memory_plan_takes_blocks_only_when_the_whole_image_does_not_fit():
    small = plan_memory(512, 512, precision="bf16", budget_bytes=6 * GB)
    assert small.grid is None and small.history_pairs == 16 and small.fits
    # A 4096 px print in 5 GB: the fewest blocks that fit, and the history the rest allows; within the budget.
    print_4096 = plan_memory(4096, 2731, precision="bf16", budget_bytes=5 * GB)
    assert print_4096.grid == (4, 2)  # 8 blocks of 1184 x 1536 px with their halos
    assert MIN_HISTORY_PAIRS <= print_4096.history_pairs < 8 and print_4096.fits
    assert print_4096.peak_bytes <= 5 * GB
    # With 6 GB: fewer, larger blocks (past 1.6 MP each, counted at the larger rate per pixel).
    assert plan_memory(4096, 2731, precision="bf16", budget_bytes=6 * GB).grid == (3, 2)
    assert plan_memory(4096, 2731, precision="bf16", budget_bytes=64 * GB).grid is None
    assert not plan_memory(8192, 5461, precision="bf16", budget_bytes=6 * GB).fits
    # On an 80 GB GPU an 8192 px print would fit whole, but relu1_1 would pass 2^31 elements: blocks.
    gpu = plan_memory(8192, 5461, precision="bf16", budget_bytes=72 * GB)
    assert gpu.fits and gpu.grid == (2, 1) and gpu.history_pairs == 8


def test_cost_of_a_print_is_its_scales_not_steps_times_its_size():
    params = TransferParams(max_size=4096)
    plan = plan_scales((1200, 800), params)
    cost = plan_cost(plan)
    assert 120 * 0.2 < cost < 120 * 4096 * 2731 / 1e6 / 5
    # The scale in blocks costs more per pixel than one evaluated whole (two passes, halos).
    whole = plan_cost(plan, budget_bytes=256 * GB)
    assert whole < cost
