"""What the engine reports after every L-BFGS iteration, and how a caller stops a run."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class Progress:
    """One finished iteration. `step` counts from 1 to `steps` over every scale."""

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


class StopTransfer(Exception):
    """Raise from a progress callback to end the run after this iteration; the latest image is returned."""
