"""A transfer's plan, coarse to fine (each scale's size and iterations), and what the plan costs (torch-free).

Up to `PRINT_FROM_PX` the scales are geometric from `min_scale_size` with the steps split evenly. A print-size
picture is planned as in Galerne et al.'s "Scaling Painting Style Transfer" (2022, its fast mode: 600, 200, 66,
30 iterations): an ordinary run at half, a quarter... of the size, whatever lands at 512 to 1024 px, then scales
twice as large up to the print size, each with a third of the iterations of the one before (at least a
twentieth of the ordinary scales'): the large scales only refine brushwork, and they are what costs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from nst_shared.images import MIN_SIDE_PX, fit_size
from nst_shared.memory import DEFAULT_CPU_BUDGET_BYTES, outer_pixels, plan_memory
from nst_shared.params import TransferParams

PRINT_FROM_PX = 1024
PRINT_STEP_FRACTION = 1 / 3
MIN_PRINT_STEP_FRACTION = 1 / 20
# One blockwise iteration is a forward pass without gradients (the global Gram matrices) and a forward and
# backward pass, over the blocks with their halos: 1.3-1.8 whole-image iterations per pixel seen
# (bench/print_bench.py).
BLOCK_PASSES = 1.5


@dataclass(frozen=True)
class Scale:
    width: int
    height: int
    steps: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def scale_sizes(full: tuple[int, int], *, scales: int, min_size: int) -> list[tuple[int, int]]:
    """Sizes (width, height) from coarse to fine, geometric between `min_size` and the full size.

    Scales whose short side would fall under the network's minimum are left out.
    """
    longest = max(full)
    if scales <= 1 or longest <= min_size:
        return [full]
    ratio = (longest / min_size) ** (1 / (scales - 1))
    sizes = []
    for i in range(scales - 1):
        size = fit_size(full[0], full[1], round(min_size * ratio**i))
        if min(size) >= MIN_SIDE_PX and size not in sizes:
            sizes.append(size)
    return [*sizes, full]


def split_steps(steps: int, weights: Sequence[float]) -> list[int]:
    """`steps` in proportion to `weights`, the rounding remainder to the largest fractions, then the coarse
    (cheap) scales first."""
    total = sum(weights)
    shares = [steps * w / total for w in weights]
    counts = [math.floor(s) for s in shares]
    order = sorted(range(len(weights)), key=lambda i: (counts[i] - shares[i], i))
    for i in order[: steps - sum(counts)]:
        counts[i] += 1
    return counts


def plan_scales(content_size: tuple[int, int], params: TransferParams) -> list[Scale]:
    """The scales of a transfer of a `content_size` picture, coarse to fine; the last is the output's size."""
    full = fit_size(*content_size, params.max_size)
    longest = max(full)
    doublings = math.ceil(math.log2(longest / PRINT_FROM_PX)) if longest > PRINT_FROM_PX and params.scales > 1 else 0
    base = fit_size(*content_size, round(longest / 2**doublings))
    sizes = scale_sizes(base, scales=params.scales, min_size=params.min_scale_size)
    weights = [1.0] * len(sizes)
    for k in range(1, doublings + 1):
        sizes.append(full if k == doublings else fit_size(*content_size, round(longest / 2 ** (doublings - k))))
        weights.append(max(PRINT_STEP_FRACTION**k, MIN_PRINT_STEP_FRACTION))
    return [Scale(w, h, n) for (w, h), n in zip(sizes, split_steps(params.steps, weights)) if n > 0]


def style_longest_px(style_size: tuple[int, int], output_longest: int, style_scale: float) -> int:
    """The style image's long side at a scale whose output's long side is `output_longest`: `style_scale` times
    that, but never enlarged past its own resolution (times `style_scale` when that is over 1), so at print
    size the brush strokes keep the painting's own scale instead of being blown up."""
    return max(1, round(min(output_longest * style_scale, max(style_size) * max(1.0, style_scale))))


def step_cost(scale: Scale, *, precision: str = "fp32", budget_bytes: int = DEFAULT_CPU_BUDGET_BYTES) -> float:
    """What one iteration of `scale` costs in whole-image megapixel-iterations: its megapixels, or for a scale
    evaluated in blocks, its passes over the blocks and their halos."""
    memory = plan_memory(scale.width, scale.height, precision=precision, budget_bytes=budget_bytes)
    if memory.grid is None:
        return scale.width * scale.height / 1e6
    return BLOCK_PASSES * outer_pixels(scale.width, scale.height, memory.grid) / 1e6


def plan_cost(plan: Sequence[Scale], *, precision: str = "fp32", budget_bytes: int = DEFAULT_CPU_BUDGET_BYTES) -> float:
    """What a plan costs: the sum of its scales' steps x `step_cost`; the defaults price it as a CPU worker
    with the default memory budget would run it."""
    return sum(s.steps * step_cost(s, precision=precision, budget_bytes=budget_bytes) for s in plan)


def params_cost(params: TransferParams, content_size: tuple[int, int] | None = None) -> float:
    """`plan_cost` of a transfer; without the content's size, of a square picture (the most pixels)."""
    return plan_cost(plan_scales(content_size or (params.max_size, params.max_size), params))


def clip_cost(params: TransferParams, frames: int, content_size: tuple[int, int] | None = None) -> float:
    """Steps x megapixels of a clip: its first frame's schedule, then `frame_steps` at full size for each later
    frame (each starts from the previous painted frame: no coarse scales)."""
    width, height = fit_size(*(content_size or (params.max_size, params.max_size)), params.max_size)
    return params_cost(params, content_size) + max(frames - 1, 0) * params.frame_steps * width * height / 1e6
