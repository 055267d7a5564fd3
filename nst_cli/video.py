"""`nst run --content clip.mp4 --output out.mp4`: a clip painted here, frame after frame (nst_core/video.py), with a
bar by frame; the sound re-encoded, the provenance in the video's metadata and a poster PNG beside it."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nst_cli.interrupts import Interrupts
from nst_shared.params import TransferParams

if TYPE_CHECKING:
    from nst_shared import painting

CLIP_SUFFIXES = {".mp4": "mp4", ".webm": "webm"}


def is_clip(path: Path) -> bool:
    from nst_shared.clip_info import clip_kind

    try:
        with path.open("rb") as file:
            head = file.read(32)
    except OSError:
        return False  # nst run says why when it reads it
    return clip_kind(head) is not None and (clip_kind(head) not in ("gif", "webp") or _animated(path))


def _animated(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return bool(getattr(image, "is_animated", False))
    except Exception:  # not readable: nst run says so as for any picture
        return False


def paint_clip(args: argparse.Namespace, params: TransferParams, engine: Any, files: painting.Inputs) -> int:
    """Paint the clip `args.content` into `args.output` (.mp4 by default, or .webm), with the parameters and
    files `nst run` read for it (nst_cli/run.py); the device's defaults fill what the caller left unset."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from nst_core.progress import StopTransfer
    from nst_core.video import ClipPainter
    from nst_shared import painting
    from nst_shared.errors import NstError
    from nst_shared.images import encode_image
    from nst_shared.video_io import encode_clip, iter_frames, probe_file

    output: Path = args.output
    if output.suffix.lower() not in CLIP_SUFFIXES:
        output = output.with_suffix(".mp4")
    try:
        info = probe_file(args.content)
        styles, style_masks = painting.decode_styles(files)
    except NstError as exc:
        print(f"nst run: {exc}", file=sys.stderr)
        return 2
    explicit = params.model_fields_set
    params = painting.applied_params(engine, params, explicit=explicit, caps=None, size=(info.width, info.height))
    painter = ClipPainter(engine, styles, params, style_masks=style_masks)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} frames"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    task = bar.add_task("painting", total=info.frames, info="")
    painted: list[Any] = []
    steps_done = 0

    def on_progress(index: int, p: Any) -> None:
        bar.update(task, description=f"frame {index + 1} of {info.frames}", info=f"step {p.step}/{p.steps}")
        if interrupts.requested:
            raise StopTransfer()

    started = time.perf_counter()
    try:
        with Interrupts() as interrupts, bar:
            for index, frame in enumerate(iter_frames(args.content, info, max_pixels=info.width * info.height)):
                result = painter.paint(frame, callback=functools.partial(on_progress, index))
                painted.append(result.image)
                steps_done += result.steps_done
                bar.update(task, completed=index + 1)
                if interrupts.requested:
                    break
    except NstError as exc:
        print(f"nst run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nst run: interrupted", file=sys.stderr)
        return 130
    record = painting.record(engine, params, files, steps_done=steps_done, frames=len(painted))
    output.parent.mkdir(parents=True, exist_ok=True)
    clip_format = CLIP_SUFFIXES[output.suffix.lower()]
    encode_clip(painted, output, rate=info.fps, format=clip_format, sound_from=args.content, record=record)
    poster = output.with_name(f"{output.stem}.poster.png")
    poster.write_bytes(encode_image(painted[0], "PNG", record=record))
    state = "stopped early" if interrupts.requested else "done"
    print(
        f"{state}: {len(painted)} of {info.frames} frames in {time.perf_counter() - started:.1f} s on "
        f"{engine.device_name} ({engine.precision}) -> {output} ({painted[0].width}x{painted[0].height}), {poster}"
    )
    return 130 if interrupts.requested else 0
