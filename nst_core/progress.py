"""What the engine reports after every L-BFGS iteration, and how a caller stops a run."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class Progress:
    """One finished iteration; `step` counts from 1 to `steps` over every scale. A scale evaluated in blocks
    also reports each block of the evaluation in progress (`block` from 1 to `blocks`; `step` is the last
    finished iteration's, as are the losses)."""

    step: int
    steps: int
    scale: int  # 1-based index of the current scale
    scales: int
    width: int
    height: int
    content_loss: float
    style_loss: float
    tv_loss: float
    total_loss: float
    elapsed_s: float
    preview: Image.Image | None = None  # set every `preview_every` steps, and on the last step when asked
    blocks: int = 0  # blocks of one evaluation at this scale; 0: the whole image at once
    block: int = 0  # 0 on the report that ends an iteration
    work_fraction: float | None = None  # of the run's work done, weighing each step by its scale's cost


class StopTransfer(Exception):
    """Raise from a progress callback to end the run after this iteration; the latest image is returned."""
