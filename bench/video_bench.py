"""Clips painted frame by frame (nst_core/video.py) against each frame painted on its own, with the same parameters.

Three clips made from ../shared/images (a slow pan, a slow zoom, a tiger's head moving over a still town), the
starry night as the style. For each: the warping error of Lai et al. ("Learning Blind Video Temporal
Consistency", ECCV 2018: the mean squared difference, pixels in 0..1, between a painted frame and the previous
painted frame warped by the INPUT's flow, where the flow checks trust it), the style ratio of bench/quality.py
(lower is more painted; the mean over the frames), and seconds per frame, the first against the later ones.
A strip per clip (input, ours, per frame; six consecutive frames) goes to --strips for looking at.

Run: .venv/bin/python bench/video_bench.py [--size 256 --frames 12 --clips pan,zoom,object]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.quality import quality_ratios
from nst_core import flow
from nst_core.transfer import StyleTransfer
from nst_core.video import ClipPainter
from nst_shared.params import TransferParams

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/images")


def _open(name: str) -> Image.Image:
    return Image.open(SHARED / name).convert("RGB")


def pan(frames: int, size: int) -> list[Image.Image]:
    """The Neckarfront, the camera sliding right 1% of the width a frame."""
    photo = _open("content/neckarfront.jpg")
    photo = photo.resize((round(size * 1.5), round(size * 1.5 * photo.height / photo.width)))
    height = round(size * 3 / 4)
    return [photo.crop((x, 0, x + size, height)) for x in (round(i * size / 100) for i in range(frames))]


def zoom(frames: int, size: int) -> list[Image.Image]:
    """The city, the camera closing in 1% a frame around the centre."""
    photo = _open("content/cityscape.jpeg")
    cx, cy, width = photo.width / 2, photo.height / 2, min(photo.width, photo.height * 4 / 3) * 0.9
    out = []
    for i in range(frames):
        w = width * 0.99**i
        h = w * 3 / 4
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        out.append(photo.resize((size, round(size * 3 / 4)), Image.Resampling.LANCZOS, box=box))
    return out


def moving_object(frames: int, size: int) -> list[Image.Image]:
    """The tiger's head, in an oval, crossing a still Neckarfront 1.5% of the width a frame."""
    height = round(size * 3 / 4)
    town = _open("content/neckarfront.jpg").resize((size, height), Image.Resampling.LANCZOS)
    tiger = _open("content/tiger.jpg")
    head = tiger.crop((tiger.width * 0.25, tiger.height * 0.1, tiger.width * 0.75, tiger.height * 0.7))
    head = head.resize((size * 2 // 5, height * 3 // 5), Image.Resampling.LANCZOS)
    oval = Image.new("L", head.size, 0)
    ImageDraw.Draw(oval).ellipse((0, 0, head.width - 1, head.height - 1), fill=255)
    out = []
    for i in range(frames):
        frame = town.copy()
        frame.paste(head, (round(size * (0.1 + 0.015 * i)), height // 5), oval)
        out.append(frame)
    return out


CLIPS: dict[str, Callable[[int, int], list[Image.Image]]] = {"pan": pan, "zoom": zoom, "object": moving_object}


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


def paint(
    engine: StyleTransfer, frames: list[Image.Image], style: Image.Image, params: TransferParams, *, clip: bool
) -> tuple[list[Image.Image], list[float]]:
    """The painted frames and each one's seconds: as a clip, or each frame on its own."""
    painter = ClipPainter(engine, [style], params)
    images, seconds = [], []
    for frame in frames:
        started = time.perf_counter()
        result = painter.paint(frame) if clip else engine.stylize(frame, [style], params)
        seconds.append(time.perf_counter() - started)
        images.append(result.image)
    return images, seconds


def strip(rows: list[list[Image.Image]], first: int) -> Image.Image:
    """Six consecutive frames from `first` of each row, side by side, rows stacked."""
    width, height = rows[0][0].size
    sheet = Image.new("RGB", (6 * width, len(rows) * height), "white")
    for r, row in enumerate(rows):
        for c, image in enumerate(row[first : first + 6]):
            sheet.paste(image.resize((width, height)), (c * width, r * height))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--clips", default="pan,zoom,object")
    parser.add_argument("--temporal-weight", type=float)
    parser.add_argument("--frame-steps", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--no-per-frame", action="store_true", help="paint only as a clip (to tune its parameters)")
    parser.add_argument("--strips", type=Path, default=Path("/tmp/video_bench"))
    args = parser.parse_args()
    knobs = {"temporal_weight": args.temporal_weight, "frame_steps": args.frame_steps, "steps": args.steps}
    given = {k: v for k, v in knobs.items() if v is not None}
    params = TransferParams(max_size=args.size, seed=1, **given)
    engine = StyleTransfer()
    style = _open("style/starry.jpg")
    args.strips.mkdir(parents=True, exist_ok=True)
    print(
        f"{args.size} px, {args.frames} frames, steps {params.steps}, frame_steps {params.frame_steps}, "
        f"temporal_weight {params.temporal_weight:g}, {engine.device} {engine.precision}"
    )
    print("clip    method     warp error  style ratio  first s  later s/frame")
    for name in args.clips.split(","):
        frames = CLIPS[name](args.frames, args.size)
        rows = [[f.resize((args.size, round(args.size * f.height / f.width))) for f in frames]]
        for method, clip in (("clip", True), ("per-frame", False)):
            if method == "per-frame" and args.no_per_frame:
                continue
            painted, seconds = paint(engine, frames, style, params, clip=clip)
            ratio = float(np.mean([quality_ratios(p, f, style)[0] for p, f in zip(painted, frames)]))
            later = float(np.mean(seconds[1:])) if len(seconds) > 1 else float("nan")
            print(
                f"{name:7} {method:9} {warping_error(frames, painted):11.2e} {ratio:12.3f} "
                f"{seconds[0]:8.1f} {later:14.1f}",
                flush=True,
            )
            rows.append(painted)
        first = max(0, min(3, args.frames - 6))
        strip(rows, first).save(args.strips / f"{name}_{args.size}.png")


if __name__ == "__main__":
    main()
