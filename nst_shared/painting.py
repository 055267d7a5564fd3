"""One painting, as the worker and `nst run` both make it (torch-free: the engine is passed in).

`decode` turns the input files into images and checks the masks; `paint` applies the device's defaults, draws
the seed, stylizes and returns the picture with its provenance, which `Painting.encode` writes into the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from nst_shared import provenance
from nst_shared.device_defaults import for_device_within_caps
from nst_shared.images import DEFAULT_MAX_PIXELS, decode_image, encode_image
from nst_shared.masks import check_mask_count, check_mask_covers
from nst_shared.params import TransferParams, for_device, with_seed
from nst_shared.settings import Settings


class Engine(Protocol):
    """What a painting needs of an engine (nst_core.transfer.StyleTransfer, or a test's fake)."""

    device: Any  # has .type: "cpu", "cuda", "mps"
    precision: str
    memory_budget_bytes: int

    @property
    def device_name(self) -> str: ...  # read-only: StyleTransfer's is a property

    def stylize(self, content: Any, styles: Any, params: TransferParams, *, style_masks: Any, callback: Any) -> Any:
        """An object with image, steps_done, stopped and elapsed_s."""


@dataclass(frozen=True)
class Inputs:
    """The input files' bytes, as uploaded or read from disk (their hashes go into the provenance)."""

    content: bytes
    styles: Sequence[bytes]
    masks: Sequence[bytes] = ()


@dataclass(frozen=True)
class Decoded:
    """The inputs as upright RGB images, masks checked."""

    files: Inputs
    content: Image.Image
    styles: list[Image.Image]
    masks: list[Image.Image]


@dataclass(frozen=True)
class Painting:
    """The picture, the parameters it was painted with (seed included) and what its file records."""

    image: Image.Image
    params: TransferParams
    steps_done: int
    stopped: bool
    elapsed_s: float
    record: dict[str, Any] = field(repr=False)

    def encode(self, format: str = "PNG") -> bytes:
        return encode_image(self.image, format, record=self.record)


def decode(files: Inputs, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """The images, or a typed NstError: an unreadable or oversized file, a mask count or an empty mask."""
    styles, masks = decode_styles(files, max_pixels=max_pixels)
    return Decoded(files, decode_image(files.content, max_pixels=max_pixels), styles, masks)


def decode_styles(
    files: Inputs, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[list[Image.Image], list[Image.Image]]:
    """The styles and their masks, checked (a clip's frames are decoded as they are painted)."""
    check_mask_count(len(files.masks), len(files.styles))
    styles = [decode_image(data, max_pixels=max_pixels) for data in files.styles]
    masks = [decode_image(data, max_pixels=max_pixels) for data in files.masks]
    for index, mask in enumerate(masks):
        check_mask_covers(mask, index)
    return styles, masks


def paint(
    engine: Engine,
    inputs: Decoded,
    params: TransferParams,
    *,
    explicit: set[str] | frozenset[str],
    caps: Settings | None = None,
    on_params: Callable[[TransferParams], None] | None = None,
    callback: Callable[[Any], None] | None = None,
    job_id: str | None = None,
    attempt: int | None = None,
) -> Painting:
    """Paint `inputs` with `params`: the device's defaults fill the fields not in `explicit` (within `caps`, a
    deployment's limits, when given) and an unset seed is drawn; `on_params` sees them before the run starts."""
    params = applied_params(engine, params, explicit=explicit, caps=caps, size=inputs.content.size)
    if on_params is not None:
        on_params(params)
    result = engine.stylize(inputs.content, inputs.styles, params, style_masks=inputs.masks, callback=callback)
    made = record(engine, params, inputs.files, steps_done=result.steps_done, job_id=job_id, attempt=attempt)
    return Painting(result.image, params, result.steps_done, result.stopped, result.elapsed_s, made)


def record(
    engine: Engine,
    params: TransferParams,
    files: Inputs,
    *,
    steps_done: int,
    job_id: str | None = None,
    attempt: int | None = None,
    frames: int | None = None,
) -> dict[str, Any]:
    """The provenance of a picture or a clip (`frames` painted) that `engine` made from `files` with `params`."""
    return provenance.build(
        params,
        steps_done=steps_done,
        device=engine.device_name,
        precision=engine.precision,
        content=files.content,
        styles=files.styles,
        masks=files.masks,
        job_id=job_id,
        attempt=attempt,
        frames=frames,
    )


def applied_params(
    engine: Engine,
    params: TransferParams,
    *,
    explicit: set[str] | frozenset[str],
    caps: Settings | None,
    size: tuple[int, int],
) -> TransferParams:
    """`params` as a run uses them: the device's defaults in the fields not in `explicit` (within `caps`, when
    given) and an unset seed drawn (a requeued run and the provenance use the same one)."""
    if caps is None:
        return with_seed(for_device(params, engine.device.type, explicit=explicit))
    return with_seed(
        for_device_within_caps(
            params,
            engine.device.type,
            explicit=explicit,
            settings=caps,
            content_size=size,
            precision=engine.precision,
            budget_bytes=engine.memory_budget_bytes,
        )
    )
