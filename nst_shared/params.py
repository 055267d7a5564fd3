"""The one set of style-transfer parameters: defaults, bounds and help text live here once.

Plain standard library on purpose: the engine, the worker, the API (which has no torch) and the CLI
all build their options from `TransferParams`, so a default or a bound is never written twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Init = Literal["content", "noise", "style"]
INITS: tuple[str, ...] = ("content", "noise", "style")
# The number format of the network (nst_core/precision.py): an engine setting, like the device, not a job's.
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")

CONTENT_LAYERS: tuple[str, ...] = ("conv4_2",)
STYLE_LAYERS: tuple[str, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
# On the bundled network the Gram matrices of these layers differ in size by four orders of magnitude (mean
# squares ~3e2, 3e4, 1e4, 5e5 and 1e2 on the shared paintings at 384 px), so with equal weights the style loss is
# nearly all conv4_1: colours (conv1_1) and large shapes (conv5_1) barely transfer. These weights, about the
# inverse of each layer's typical size, let each layer count alike (conv5_1 a little less: at full balance it
# stamps the painting's large shapes, a Starry-Night moon, onto the subject); conv4_1 keeps the 0.2 of an equal
# split. Measured on tiger + The Starry Night at 384 px (bench/quality.py): style ratio 0.024 and content ratio
# 0.196 at style weight 15, against 0.090 / 0.332 with equal weights at 2e2 and the seed's 0.039 / 0.410.
STYLE_LAYER_WEIGHTS: tuple[float, ...] = (333.0, 3.3, 10.0, 0.2, 300.0)


def _param(default: Any, help: str, *, ge: float | None = None, le: float | None = None,
           gt: float | None = None, api: bool = True) -> Any:
    """A dataclass field carrying its bounds and help text for the CLI, the API and the docs."""
    meta = {"help": help, "ge": ge, "le": le, "gt": gt, "api": api}
    return field(default=default, metadata=meta)


@dataclass(frozen=True, kw_only=True)
class TransferParams:
    """Everything that decides what picture a transfer makes (not where it runs)."""

    max_size: int = _param(384, "Longest side of the output in pixels (above 1024: a print, painted coarse to fine "
                                "up to it).", ge=64, le=8192)
    steps: int = _param(120, "L-BFGS iterations in all, over every scale (each one is a progress step).",
                        ge=1, le=2000)
    content_weight: float = _param(1.0, "Weight of the content loss (MSE of conv4_2 features).", ge=0, le=1e9)
    style_weight: float = _param(15.0, "Weight of the style loss (MSE of Gram matrices). With the default layer "
                                       "weights: 5 subtle .. 50 strong.", ge=0, le=1e12)
    tv_weight: float = _param(0.0, "Weight of the total-variation loss, which smooths the image.", ge=0, le=1e6)
    style_scale: float = _param(1.0, "Size of the style image relative to the output size, never past the style's "
                                     "own resolution (times style_scale when over 1).", ge=0.1, le=4.0)
    style_blend: tuple[float, ...] | None = _param(
        None, "Weights of the style images, one per style (normalised to sum 1); equal when unset.")
    preserve_colors: bool = _param(False, "Keep the content image's colours: transfer on luminance only.")
    init: Init = _param("content", "Starting image: content, noise or style.")
    seed: int | None = _param(None, "Random seed; runs with the same seed are reproducible on the CPU.",
                              ge=0, le=2**31 - 1)
    scales: int = _param(3, "Number of scales, coarse to fine (1 = single scale, as in Gatys et al.).",
                         ge=1, le=6)
    min_scale_size: int = _param(192, "Longest side of the coarsest scale in pixels.", ge=64, le=2048)
    early_stop_tolerance: float = _param(
        0.0, "Stop a scale early when the loss improves by less than this fraction over 10 steps (0 = off).",
        ge=0, le=0.5)
    preview_every: int = _param(0, "Send a preview image every N steps (0 = none).", ge=0, le=2000)
    content_layers: tuple[str, ...] = _param(CONTENT_LAYERS, "Layers of the content loss.", api=False)
    style_layers: tuple[str, ...] = _param(STYLE_LAYERS, "Layers of the style loss.", api=False)
    style_layer_weights: tuple[float, ...] | None = _param(
        STYLE_LAYER_WEIGHTS, "Weight per style layer, one per style layer (None: equal, as in Gatys et al.); the "
        "default balances the five default layers.", api=False)

    def replace(self, **changes: Any) -> "TransferParams":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (tuples become lists), for job records and the queue."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TransferParams":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


# The defaults above are for a CPU (a 384 px picture in about a minute on two cores). A GPU paints a bigger
# picture with more steps in a fraction of that: these replace the defaults a caller did not set.
DEVICE_DEFAULTS: dict[str, dict[str, Any]] = {"cuda": {"max_size": 512, "steps": 300}}


def for_device(params: TransferParams, device_type: str, *, explicit: "set[str] | frozenset[str]") -> TransferParams:
    """`params` with `device_type`'s defaults for every field not in `explicit` (the ones the caller set)."""
    changes = {k: v for k, v in DEVICE_DEFAULTS.get(device_type, {}).items() if k not in explicit}
    return params.replace(**changes) if changes else params


def param_fields() -> tuple[dataclasses.Field, ...]:
    """The fields with their metadata: what the CLI, the API form and the docs are built from."""
    return dataclasses.fields(TransferParams)


DEFAULTS = TransferParams()
