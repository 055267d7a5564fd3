"""A clip painted frame by frame, each frame held to the one before (Ruder et al., "Artistic style transfer for
videos", GCPR 2016), so the texture holds still where the scene does.

The contract, for the worker and for fake engines:
- `ClipPainter(engine, styles, params, style_masks=...)`, then `paint(frame)` for each frame in order (RGB,
  every frame the clip's size); each call returns the engine's `TransferResult` for that frame, its image at
  the output's size (`params.max_size` on the long side). The first call paints frame 1 as a picture with
  `params`; each later call runs `params.frame_steps` iterations from the previous painted frame warped by the
  optical flow, with the temporal loss (`params.temporal_weight`) towards it. A result with `stopped` set is
  not final: paint that frame again, or stop.
- `resume(first_frame=..., previous_frame=..., previous_painted=..., style_factor=...)` before the first `paint`
  goes on after frames an earlier attempt finished: the next `paint` gives the frame an uninterrupted run would
  (same seed), given the input frames, the stored painting (lossless) of the last finished frame and the style
  factor the first frame's result reported.
- The engine sees only `engine.stylize(content, styles, params, *, style_masks, callback, init_image,
  temporal, style_factor)`: `init_image` (a PIL image at the output's size) is where the optimisation starts,
  `temporal` a `nst_core.flow.TemporalTarget` (or None for frame 1), `style_factor` the calibration the
  previous frame's result reported (None for the first frame: the engine steers its own). A fake engine
  accepts the three keywords and reports a `style_factor`.
- Colours: color_mode `match` matches the styles to the FIRST frame's colours once, so colours do not drift
  and the engine's style Gram cache serves every later frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from nst_core import colors
from nst_core.flow import temporal_target
from nst_shared.errors import InvalidParameter
from nst_shared.images import fit_size, resize
from nst_shared.params import TransferParams

if TYPE_CHECKING:
    from nst_core.transfer import ProgressCallback, TransferResult

# A later frame refines the warped painting at the output's size only: measured in bench/video_bench.py.
FRAME_SCALES = 1


class ClipPainter:
    """Paints a clip's frames in order, each frame starting from the previous painted frame warped by the
    optical flow."""

    def __init__(
        self,
        engine: Any,
        styles: Sequence[Image.Image],
        params: TransferParams,
        *,
        style_masks: Sequence[Image.Image] | None = None,
    ) -> None:
        self._engine = engine
        self._styles = list(styles)
        self._params = params
        self._style_masks = list(style_masks) if style_masks else None
        self._styles_work: list[Image.Image] = []
        self._frame_params = frame_params(params)
        self._first_params = params
        self._size: tuple[int, int] | None = None  # the clip's frames', as they come
        self._previous: Image.Image | None = None  # the previous input frame, at the output's size
        self._previous_painted: Image.Image | None = None
        self._style_factor: float | None = None  # the first frame's (calibration.py), the same for every later frame

    def paint(self, frame: Image.Image, *, callback: ProgressCallback | None = None) -> TransferResult:
        """The painting of the clip's next frame (the first call: frame 1, painted as a picture)."""
        if self._previous is None:
            frame = self._start(frame)
            result = self._engine.stylize(
                frame, self._styles_work, self._first_params, style_masks=self._style_masks, callback=callback
            )
        else:
            assert self._previous_painted is not None
            frame = self._fit(frame)
            target = temporal_target(self._previous, frame, self._previous_painted, self._params.temporal_weight)
            result = self._engine.stylize(
                frame,
                self._styles_work,
                self._frame_params,
                style_masks=self._style_masks,
                callback=callback,
                init_image=target.image,
                temporal=target,
                style_factor=self._style_factor,
            )
        self._previous, self._previous_painted = frame, result.image.convert("RGB")
        self._style_factor = result.style_factor
        return result  # type: ignore[no-any-return]

    def resume(
        self,
        *,
        first_frame: Image.Image,
        previous_frame: Image.Image,
        previous_painted: Image.Image,
        style_factor: float,
    ) -> None:
        """Go on after frames an earlier attempt finished: the next `paint` is the frame after `previous_frame`,
        whose painting was `previous_painted`, with the first frame's `style_factor`."""
        self._start(first_frame)
        self._style_factor = style_factor
        self._previous = self._fit(previous_frame)
        if previous_painted.size != self._previous.size:
            raise InvalidParameter(
                f"the painted frame is {previous_painted.size[0]}x{previous_painted.size[1]} px, not the output's "
                f"{self._previous.size[0]}x{self._previous.size[1]}",
                field="content",
            )
        self._previous_painted = previous_painted.convert("RGB")

    def _start(self, first: Image.Image) -> Image.Image:
        """The clip's first frame at the output's size; the clip's size and colours are fixed from it."""
        self._size = first.size
        first = self._fit(first)
        if self._params.color_mode == "match":
            # Matched once to frame 1, then painted as plain styles: the same colours (and Gram cache) every frame.
            self._styles_work = [colors.match_colors(s, first) for s in self._styles]
            self._first_params = self._params.replace(color_mode="style")
            self._frame_params = frame_params(self._first_params)
        else:
            self._styles_work = self._styles
        return first

    def _fit(self, frame: Image.Image) -> Image.Image:
        assert self._size is not None, "the clip's first frame comes first"
        if frame.size != self._size:
            raise InvalidParameter(
                f"a frame is {frame.size[0]}x{frame.size[1]} px, not the clip's {self._size[0]}x{self._size[1]}",
                field="content",
            )
        return resize(frame.convert("RGB"), fit_size(*frame.size, self._params.max_size))


def frame_params(params: TransferParams) -> TransferParams:
    """The parameters of a frame after the first: `frame_steps` iterations at `FRAME_SCALES` scales."""
    return params.replace(steps=params.frame_steps, scales=FRAME_SCALES)
