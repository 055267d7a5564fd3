"""`nst run`: one style transfer on this machine, with a progress bar; options come from TransferParams."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from nst_cli import video
from nst_cli.interrupts import Interrupts
from nst_cli.options import STYLE_MASK_HELP, add_param_arguments, params_from_args
from nst_shared.looks import LOOKS
from nst_shared.params import PRECISIONS, TransferParams

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEFAULT_CONTENT = EXAMPLES / "chelsea.jpg"
DEFAULT_STYLE = EXAMPLES / "swirls.jpg"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="paint one picture here (no service needed)",
        description="Neural style transfer on this machine. Without --content/--style it paints the "
        "project's example photo in an example style.",
    )
    parser.add_argument(
        "--content",
        type=Path,
        default=None,
        help="content image (default: examples/chelsea.jpg), or a clip: MP4, MOV, WebM, animated GIF or WebP "
        "(docs/video.md)",
    )
    parser.add_argument(
        "--style",
        type=Path,
        action="append",
        default=None,
        help="style image; repeat for several (default: examples/swirls.jpg)",
    )
    parser.add_argument("--style-mask", type=Path, action="append", default=None, metavar="MASK", help=STYLE_MASK_HELP)
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("out.png"),
        help="output file: .png, .jpg or .webp; for a clip .mp4 (the default) or .webm (it records the parameters, "
        "seed and inputs' hashes: `nst info FILE`)",
    )
    parser.add_argument(
        "--from",
        dest="from_picture",
        type=Path,
        default=None,
        metavar="PICTURE",
        help="paint with the parameters and seed recorded in a picture nst made (the flags given here override them)",
    )
    add_param_arguments(parser)
    parser.add_argument(
        "--save-every", type=int, default=0, metavar="N", help="also write the picture every N steps (out.0050.png ...)"
    )
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="number format of the network: auto (bf16 where the device runs it much faster, "
        "e.g. a CPU with AMX or an Ampere GPU; fp32 elsewhere), fp32, bf16",
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=0.0,
        help="memory the engine may use at its peak; larger pictures are painted in blocks "
        "(default: 90%% of a GPU; on a CPU half the RAM, at most 5 GB)",
    )
    parser.add_argument(
        "--weights",
        choices=("caffe", "torchvision"),
        default="caffe",
        help="VGG19 weights: the bundled original Caffe ones, or torchvision's if cached",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from nst_core.progress import StopTransfer
    from nst_core.transfer import StyleTransfer
    from nst_shared import painting, provenance
    from nst_shared.errors import NstError
    from nst_shared.images import output_format, read_file

    clip = args.content is not None and video.is_clip(args.content)
    content_path = args.content or DEFAULT_CONTENT
    style_paths = args.style or [DEFAULT_STYLE]
    try:
        params = params_from_args(args, preview_every=args.save_every)
        recorded = _recorded(args.from_picture) if args.from_picture else None
        if recorded is not None:
            params = with_recorded(params, recorded)
        params.style_weights(len(style_paths))  # one blend weight per style, checked before the network loads
        files = painting.Inputs(
            content=read_file(content_path),
            styles=[read_file(p) for p in style_paths],
            masks=[read_file(p) for p in args.style_mask or []],
        )
        inputs = None if clip else painting.decode(files)  # a clip's frames are read as they are painted
        engine = StyleTransfer(
            device=args.device,
            weights=args.weights,
            precision=args.precision,
            memory_budget_bytes=int(args.memory_gb * 2**30) or None,
        )
    except (NstError, ValueError) as exc:
        print(f"nst run: {exc}", file=sys.stderr)
        return 2
    style_hashes = [provenance.sha256(data) for data in files.styles]
    if recorded is not None and recorded.get("sha256", {}).get("styles") != style_hashes:
        print(
            f"nst run: note: the style images differ from those {args.from_picture} was painted with "
            "(give them with --style)",
            file=sys.stderr,
        )
    if inputs is None:  # a clip: its frames are decoded as they are painted
        return video.paint_clip(args, params, engine, files)

    output: Path = args.output
    fmt = output_format(output)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    task = bar.add_task("painting", total=params.steps, info="")

    def on_progress(p: Any) -> None:
        block = f" block {p.block}/{p.blocks}" if p.block else ""
        bar.update(
            task,
            completed=p.step,
            info=f"scale {p.scale}/{p.scales} {p.width}x{p.height}{block} "
            f"content {p.content_loss:.3g} style {p.style_loss:.3g}",
        )
        if p.preview is not None and args.save_every and p.step % args.save_every == 0:
            p.preview.save(output.with_name(f"{output.stem}.{p.step:04d}{output.suffix}"))
        if interrupts.requested:
            raise StopTransfer()

    started = time.perf_counter()
    try:
        with Interrupts() as interrupts, bar:
            result = painting.paint(
                engine,
                inputs,
                params,
                explicit=params.model_fields_set,
                on_params=lambda applied: bar.update(task, total=applied.steps),  # the device's default steps
                callback=on_progress,
            )
    except NstError as exc:
        print(f"nst run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nst run: interrupted", file=sys.stderr)
        return 130
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(result.encode(fmt))
    state = "stopped early" if result.stopped else "done"
    print(
        f"{state}: {result.steps_done} steps in {time.perf_counter() - started:.1f} s on {engine.device_name} "
        f"({engine.precision})"
        f" -> {output} ({result.image.width}x{result.image.height})"
    )
    return 130 if result.stopped else 0


def _recorded(picture: Path) -> dict[str, Any]:
    """The record inside a picture nst made; ValueError when there is none."""
    from nst_shared import provenance
    from nst_shared.images import read_file

    record = provenance.read(read_file(picture))
    if record is None:
        raise ValueError(f"--from: {picture} carries no nst record (only pictures nst made do)")
    return record


def with_recorded(given: TransferParams, record: dict[str, Any]) -> TransferParams:
    """The recorded parameters (seed included), with the flags `given` on top; all of them count as set, so no
    device default replaces them. A new --look sets its own knobs, as it would without --from."""
    flags = {k: v for k, v in given.to_dict().items() if k in given.model_fields_set}
    recorded = dict(record["params"])
    if "look" in flags:
        recorded = {k: v for k, v in recorded.items() if k not in {f for knobs in LOOKS.values() for f in knobs}}
    return TransferParams.from_dict({**recorded, **flags})
