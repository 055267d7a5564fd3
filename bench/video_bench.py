"""A clip painted as a clip against each frame on its own: warping error (Lai et al.), style ratio (quality.py) and
seconds per frame on three clips from the shared pictures; a strip per clip to --strips (bench/README.md):

    .venv/bin/python bench/video_bench.py [--size 256 --frames 12 --clips pan,zoom,object]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
from common import shared_image, sheet
from PIL import Image, ImageDraw

from bench.quality import quality_ratios
from nst_core import flow
from nst_core.transfer import StyleTransfer
from nst_core.video import ClipPainter
from nst_shared.params import TransferParams


def opened(kind: str, name: str, width: int | None = None) -> Image.Image:
    picture = Image.open(shared_image(kind, name)).convert("RGB")
    return picture.resize((width, round(width * picture.height / picture.width))) if width else picture


def pan(frames: int, size: int) -> list[Image.Image]:
    """The Neckarfront, the camera sliding right 1% of the width a frame."""
    photo, height = opened("content", "neckarfront", round(size * 1.5)), round(size * 3 / 4)
    return [photo.crop((x, 0, x + size, height)) for x in (round(i * size / 100) for i in range(frames))]


def zoom(frames: int, size: int) -> list[Image.Image]:
    """The city, the camera closing in 1% a frame around the centre."""
    photo = opened("content", "cityscape")
    cx, cy, width = photo.width / 2, photo.height / 2, min(photo.width, photo.height * 4 / 3) * 0.9
    boxes = [(cx - w / 2, cy - w * 3 / 8, cx + w / 2, cy + w * 3 / 8) for w in (width * 0.99**i for i in range(frames))]
    return [photo.resize((size, round(size * 3 / 4)), Image.Resampling.LANCZOS, box=box) for box in boxes]


def moving_object(frames: int, size: int) -> list[Image.Image]:
    """The tiger's head, in an oval, crossing a still Neckarfront 1.5% of the width a frame."""
    height, tiger = round(size * 3 / 4), opened("content", "tiger")
    town = opened("content", "neckarfront").resize((size, height), Image.Resampling.LANCZOS)
    head = tiger.crop((tiger.width * 0.25, tiger.height * 0.1, tiger.width * 0.75, tiger.height * 0.7))
    head = head.resize((size * 2 // 5, height * 3 // 5), Image.Resampling.LANCZOS)
    oval = Image.new("L", head.size, 0)
    ImageDraw.Draw(oval).ellipse((0, 0, head.width - 1, head.height - 1), fill=255)
    out = [town.copy() for _ in range(frames)]
    for i, frame in enumerate(out):
        frame.paste(head, (round(size * (0.1 + 0.015 * i)), height // 5), oval)
    return out


def warping_error(frames: list[Image.Image], painted: list[Image.Image]) -> float:
    """Lai et al.'s warping error over the clip: the input's flow, its untrusted pixels left out."""
    errors = []
    for (before, after), (old, new) in zip(itertools.pairwise(frames), itertools.pairwise(painted)):
        before, after = before.resize(new.size), after.resize(new.size)
        backward = flow.flow(after, before)
        trusted = flow.certainty(flow.flow(before, after), backward)[..., None]
        diff = (np.asarray(new, np.float64) - np.asarray(flow.warp(old, backward), np.float64)) / 255
        errors.append(float((trusted * diff**2).sum() / (3 * trusted.sum())))
    return float(np.mean(errors))


def paint(engine, frames, style, params, clip: bool) -> tuple[list[Image.Image], list[float]]:
    """The painted frames and each one's seconds: as a clip, or each frame on its own."""
    painter, images, seconds = ClipPainter(engine, [style], params), [], []
    for frame in frames:
        started = time.perf_counter()
        images.append((painter.paint(frame) if clip else engine.stylize(frame, [style], params)).image)
        seconds.append(time.perf_counter() - started)
    return images, seconds


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--size", type=int, default=256)
    options.add_argument("--frames", type=int, default=12)
    options.add_argument("--clips", default="pan,zoom,object")
    for knob, kind in (("--temporal-weight", float), ("--frame-steps", int), ("--steps", int)):
        options.add_argument(knob, type=kind, default=argparse.SUPPRESS, help="the engine's default unless given")
    options.add_argument("--no-per-frame", action="store_true", help="paint only as a clip (to tune its parameters)")
    options.add_argument("--strips", type=Path, default=Path("/tmp/video_bench"))
    args = options.parse_args()
    knobs = {k: v for k, v in vars(args).items() if k in ("temporal_weight", "frame_steps", "steps")}
    params = TransferParams(max_size=args.size, seed=1, **knobs)
    engine, style = StyleTransfer(), opened("style", "starry")
    args.strips.mkdir(parents=True, exist_ok=True)
    print(f"{args.size} px, {args.frames} frames, steps {params.steps}, frame_steps {params.frame_steps}, ", end="")
    print(f"temporal_weight {params.temporal_weight:g}, {engine.device} {engine.precision}")
    print("clip    method     warp error  style ratio  first s  later s/frame")
    for name in args.clips.split(","):
        frames = {"pan": pan, "zoom": zoom, "object": moving_object}[name](args.frames, args.size)
        rows = [[f.resize((args.size, round(args.size * f.height / f.width))) for f in frames]]
        for method in ("clip",) if args.no_per_frame else ("clip", "per-frame"):
            painted, seconds = paint(engine, frames, style, params, clip=method == "clip")
            ratio = float(np.mean([quality_ratios(p, f, style)[0] for p, f in zip(painted, frames)]))
            later = float(np.mean(seconds[1:])) if len(seconds) > 1 else float("nan")
            error = warping_error(frames, painted)
            print(f"{name:7} {method:9} {error:11.2e} {ratio:12.3f} {seconds[0]:8.1f} {later:14.1f}", flush=True)
            rows.append(painted)
        first = max(0, min(3, args.frames - 6))
        sheet([row[first : first + 6] for row in rows], args.strips / f"{name}_{args.size}.png", rows[0][0].height)


if __name__ == "__main__":
    main()
