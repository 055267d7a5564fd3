"""How much memory a transfer needs at one size, and how the engine fits it into a budget (torch-free, for the API too).

The engine evaluates the loss on the whole image when that fits the budget, and otherwise block by block
(nst_core/blocks.py), where the network's memory depends on the block, not the picture; what still grows with
the picture is the image-sized state: the L-BFGS vectors and history, and the content target.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

# Blocks start at multiples of 16 px, so their max-pool grids line up with the whole image's (four pools
# before relu5_1), and carry an 80 px halo: the depth to which a block's zero padding changes relu5_1
# (1+1 px, 2+2, 4x4, 8x4, 16: the convolutions' reach, each pool's cells aligned). A test holds it to the network.
BLOCK_ALIGN_PX = 16
BLOCK_HALO_PX = 80
MIN_BLOCK_PX = 256  # a block's core side; smaller ones would be mostly halo
# relu1_1's 64 channels must stay under 2^31 elements, which 32-bit indexing kernels (cuDNN's among them) assume:
# an 8192 x 5461 picture would hold 2.9e9, so it goes in blocks whatever the budget.
MAX_WHOLE_PIXELS = 2**31 // 64

# Peak RSS above the engine's own footprint and the image-sized state, per pixel of the image or block evaluated
# (bench/README.md, print_bench.py): the activations kept for the backward, the gradients flowing back, the
# loss's gradients handed to each layer. It grows with the size: bf16 whole 650 at 1.6 MP, 860 at 4.2 MP; blocks
# with their halos 510-720 up to 1.5 MP, 1110 at 2.4 MP.
EVALUATION_BYTES_PER_PX = {"fp32": 1700, "bf16": 880}
BLOCK_EVALUATION_BYTES_PER_PX = {"fp32": 1350, "bf16": 700}  # blocks up to SMALL_BLOCK_PIXELS
LARGE_BLOCK_EVALUATION_BYTES_PER_PX = {"fp32": 2200, "bf16": 1150}
SMALL_BLOCK_PIXELS = 1_600_000
ENGINE_BYTES = 900 * 2**20  # torch and the network (~690 MB), the style's forward pass, the allocator's slack
# Image-sized float32 vectors alive at the peak: the image, its gradient, the accepted point, its gradient,
# the direction, the trial point, and the new pair under construction.
IMAGE_VECTORS = 8
CONTENT_TARGET_BYTES_PER_PX = 512 * 4 / 64  # relu4_2: 512 float32 channels at 1/8 of each side

# The L-BFGS history's share at ordinary sizes, by the network's precision: bf16 activations take half the
# memory, and the history gets what that frees. At print size the history takes what the budget leaves.
HISTORY_BUDGET_BYTES = {"fp32": 48 * 2**20, "bf16": 96 * 2**20}
MIN_HISTORY_PAIRS = 3
DEFAULT_CPU_BUDGET_BYTES = 5 * 2**30  # a 4096 px print on a CPU worker under 6 GB of RSS (bench/README.md)


@dataclass(frozen=True)
class MemoryPlan:
    """How the engine evaluates one scale, and what that takes at its peak."""

    grid: tuple[int, int] | None  # blocks across and down; None: the whole image at once
    history_pairs: int
    peak_bytes: int
    fits: bool  # False: even the smallest blocks with the shortest history are over the budget


def image_vector_bytes(pixels: int) -> int:
    return 3 * 4 * pixels


def history_size_for(pixels: int, budget_bytes: int) -> int:
    """L-BFGS history pairs by image size at ordinary sizes: each pair holds two RGB float32 images, and the
    history stays within the budget (100 pairs at 512 px would be 630 MB), with at least 8 pairs."""
    return max(8, min(100, budget_bytes // (2 * image_vector_bytes(pixels))))


def core_px(side: int, blocks: int) -> int:
    """The side of each core when `blocks` share `side` evenly (aligned; the last core takes the rest)."""
    return align_up(math.ceil(side / blocks))


def outer_pixels(width: int, height: int, grid: tuple[int, int]) -> int:
    """Pixels the network sees over all blocks of one evaluation: each core with its halo, clipped to the image."""

    def covered(side: int, blocks: int) -> int:
        return side + 2 * BLOCK_HALO_PX * (blocks - 1)  # every inner border is seen from both sides

    return covered(width, grid[0]) * covered(height, grid[1])


def largest_block_pixels(width: int, height: int, grid: tuple[int, int]) -> int:
    """Pixels of the largest block: an inner core with its halo on both sides, clipped to the image."""
    return min(width, core_px(width, grid[0]) + 2 * BLOCK_HALO_PX) * min(
        height, core_px(height, grid[1]) + 2 * BLOCK_HALO_PX
    )


def block_evaluation_bytes(block_pixels: int, precision: str) -> int:
    """The evaluation's peak for one block of `block_pixels` (its halo included)."""
    large = block_pixels > SMALL_BLOCK_PIXELS
    return (LARGE_BLOCK_EVALUATION_BYTES_PER_PX if large else BLOCK_EVALUATION_BYTES_PER_PX)[precision] * block_pixels


def plan_grid(width: int, height: int, *, precision: str, spare_bytes: int) -> tuple[tuple[int, int], bool]:
    """The grid that sees the fewest pixels (the least work: then the fewest blocks) whose largest block fits
    `spare_bytes`, and True; or the finest grid allowed (cores of `MIN_BLOCK_PX`) and False when none does."""
    finest = (max(1, width // MIN_BLOCK_PX), max(1, height // MIN_BLOCK_PX))
    fitting = [
        (outer_pixels(width, height, (across, down)), across * down, (across, down))
        for across in range(1, finest[0] + 1)
        for down in range(1, finest[1] + 1)
        if across * down > 1
        and (block := largest_block_pixels(width, height, (across, down))) < MAX_WHOLE_PIXELS
        and block_evaluation_bytes(block, precision) <= spare_bytes
    ]
    return (min(fitting)[2], True) if fitting else (finest, False)


def plan_memory(width: int, height: int, *, precision: str, budget_bytes: int) -> MemoryPlan:
    """The whole image when it fits `budget_bytes` with at least `MIN_HISTORY_PAIRS` pairs; otherwise the fewest
    blocks that do. Then as many pairs as the rest allows, up to the ordinary number."""
    pixels = width * height
    pair = 2 * image_vector_bytes(pixels)
    state = ENGINE_BYTES + IMAGE_VECTORS * image_vector_bytes(pixels) + int(CONTENT_TARGET_BYTES_PER_PX * pixels)
    grid: tuple[int, int] | None = None
    evaluation = EVALUATION_BYTES_PER_PX[precision] * pixels
    if state + evaluation + MIN_HISTORY_PAIRS * pair > budget_bytes or pixels >= MAX_WHOLE_PIXELS:
        grid, _ = plan_grid(
            width, height, precision=precision, spare_bytes=budget_bytes - state - MIN_HISTORY_PAIRS * pair
        )
        evaluation = block_evaluation_bytes(largest_block_pixels(width, height, grid), precision)
    ordinary_pairs = history_size_for(pixels, HISTORY_BUDGET_BYTES[precision])
    pairs = max(MIN_HISTORY_PAIRS, min(ordinary_pairs, (budget_bytes - state - evaluation) // pair))
    peak = state + evaluation + pairs * pair
    return MemoryPlan(grid, int(pairs), int(peak), peak <= budget_bytes)


def align_up(px: int) -> int:
    return -(-px // BLOCK_ALIGN_PX) * BLOCK_ALIGN_PX


def default_budget_bytes(device_type: str, device_total_bytes: int | None = None) -> int:
    """The engine's memory budget when none is set: 90% of a GPU's memory; on a CPU half the machine's RAM, at
    most `DEFAULT_CPU_BUDGET_BYTES` (a worker shares the host with the API, Redis and other workers)."""
    if device_total_bytes is not None and device_type != "cpu":
        return int(0.9 * device_total_bytes)
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 2 * DEFAULT_CPU_BUDGET_BYTES
    return min(ram // 2, DEFAULT_CPU_BUDGET_BYTES)


def format_bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"
