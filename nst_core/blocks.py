"""The image cut into blocks for the network: each block a core, the blocks' cores tiling the image, plus a halo.

After Galerne et al., "Scaling Painting Style Transfer" (2022): the network runs on one block at a time, so
its memory depends on the block, not the picture. A block's activations are exact over its core (the halo
is as deep as the block's zero padding reaches: nst_shared/memory.py), so each activation cell of the image is
counted once, from the block whose core holds it. Unlike SPST, whose blocks backpropagate from every cell and
keep the gradient of their core only (a halo twice as deep), ours backpropagate from their core cells only and
keep the whole block's gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nst_shared.memory import BLOCK_ALIGN_PX, BLOCK_HALO_PX, core_px


@dataclass(frozen=True)
class Span:
    """One axis of a block, in image pixels: the core [start, stop) inside the outer [outer_start, outer_stop)."""

    start: int
    stop: int
    outer_start: int
    outer_stop: int
    image: int  # the image's side along this axis

    def cells(self, stride: int) -> slice:
        """The core's cells in the block's activation at `stride` (the image's last cell included)."""
        first = (self.start - self.outer_start) // stride
        last = self.image // stride if self.stop == self.image else self.stop // stride
        return slice(first, last - self.outer_start // stride)

    def global_cells(self, stride: int) -> slice:
        """The outer region's cells in the whole image's activation at `stride`."""
        first = self.outer_start // stride
        return slice(first, first + (self.outer_stop - self.outer_start) // stride)

    @property
    def outer(self) -> slice:
        return slice(self.outer_start, self.outer_stop)


@dataclass(frozen=True)
class Block:
    rows: Span
    cols: Span


def spans(side: int, blocks: int, halo_px: int = BLOCK_HALO_PX) -> list[Span]:
    """`blocks` cores of even, aligned size (the last one takes the rest), each with its halo clipped to the
    image."""
    if halo_px % BLOCK_ALIGN_PX:
        raise ValueError(f"halos are multiples of {BLOCK_ALIGN_PX} px")
    starts = list(range(0, side, core_px(side, blocks)))
    if len(starts) > 1 and side - starts[-1] < BLOCK_ALIGN_PX:
        starts.pop()  # a sliver under one relu5_1 cell joins the block before it
    stops = [*starts[1:], side]
    return [Span(a, b, max(0, a - halo_px), min(side, b + halo_px), side) for a, b in zip(starts, stops)]


def block_grid(width: int, height: int, grid: tuple[int, int], halo_px: int = BLOCK_HALO_PX) -> list[Block]:
    """`grid` (across, down) blocks, row by row; their cores tile the image exactly."""
    return [Block(r, c) for r in spans(height, grid[1], halo_px) for c in spans(width, grid[0], halo_px)]


def grid_of(width: int, height: int, block_px: int) -> tuple[int, int]:
    """The grid whose cores are at most `block_px` on a side."""
    return math.ceil(width / block_px), math.ceil(height / block_px)
