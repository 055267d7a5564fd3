"""Optical flow between consecutive frames, and what it says a painted frame should keep of the one before.

After Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos" (GCPR 2016), sections 3-4, with OpenCV's
DIS flow (Kroeger et al. 2016) in place of DeepFlow/EpicFlow: no weights, milliseconds at clip sizes. The
previous painted frame is warped to the new frame along the backward flow (new -> previous); a pixel is trusted
(certainty 1) unless the forward-backward check finds it disoccluded or it lies on a motion boundary (0).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# DIS at its "medium" preset: a few ms at 384 px, and sub-pixel on the slow motion clips are made of.
_PRESET = cv2.DISOpticalFlow_PRESET_MEDIUM


@dataclass(frozen=True)
class TemporalTarget:
    """What a frame's optimisation is pulled towards: `image` (the previous painted frame warped to this one, at
    the output's size) where `certainty` (float32, height x width, 0..1) trusts it, with `weight`
    (TransferParams.temporal_weight)."""

    image: Image.Image
    certainty: np.ndarray
    weight: float


def flow(source: Image.Image, target: Image.Image) -> np.ndarray:
    """The DIS flow from `source` to `target` (same size), float32 height x width x 2 (dx, dy): the content at
    pixel p of `source` is at p + flow[p] in `target`."""
    out = np.zeros((source.height, source.width, 2), np.float32)
    found: np.ndarray = cv2.DISOpticalFlow.create(_PRESET).calc(_gray(source), _gray(target), out)
    return found


def warp(image: Image.Image, backward: np.ndarray) -> Image.Image:
    """`image` (a frame, or its painting) moved to the next frame: pixel p takes `image` at p + backward[p],
    where `backward` is the flow from the next frame to this one; outside the image, its nearest edge."""
    sampled = cv2.remap(
        np.asarray(image.convert("RGB")), *_sample_maps(backward), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return Image.fromarray(sampled)


def certainty(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Per pixel of the next frame, 1 where the warp along `backward` can be trusted and 0 where Ruder et al.'s
    checks fail: the forward flow at the pixel's source does not bring it back (a disocclusion), the backward
    flow changes fast around it (a motion boundary), or its source lies outside the previous frame."""
    map_x, map_y = _sample_maps(backward)
    returned: np.ndarray = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    round_trip = np.sum((backward + returned) ** 2, axis=-1)
    occluded = round_trip > 0.01 * (np.sum(backward**2, axis=-1) + np.sum(returned**2, axis=-1)) + 0.5
    du_y, du_x = np.gradient(backward[..., 0])
    dv_y, dv_x = np.gradient(backward[..., 1])
    boundary = du_x**2 + du_y**2 + dv_x**2 + dv_y**2 > 0.01 * np.sum(backward**2, axis=-1) + 0.002
    height, width = backward.shape[:2]
    outside = (map_x < -0.5) | (map_x > width - 0.5) | (map_y < -0.5) | (map_y > height - 0.5)
    trusted: np.ndarray = (~(occluded | boundary | outside)).astype(np.float32)
    return trusted


def temporal_target(
    previous: Image.Image, frame: Image.Image, previous_painted: Image.Image, weight: float
) -> TemporalTarget:
    """The target of painting `frame`, which follows `previous` (both input frames at the output's size) whose
    painting was `previous_painted`."""
    backward = flow(frame, previous)
    forward = flow(previous, frame)
    return TemporalTarget(warp(previous_painted, backward), certainty(forward, backward), weight)


def _sample_maps(displacement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = displacement.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return xs + displacement[..., 0], ys + displacement[..., 1]


def _gray(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("L")))
