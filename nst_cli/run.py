"""`nst run`: one style transfer on this machine, with a progress bar; options come from TransferParams."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from nst_cli.options import STYLE_MASK_HELP, add_param_arguments, params_from_args
from nst_shared.params import PRECISIONS, for_device

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEFAULT_CONTENT = EXAMPLES / "chelsea.jpg"
DEFAULT_STYLE = EXAMPLES / "swirls.jpg"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="paint one picture here (no service needed)",
        description="Neural style transfer on this machine. Without --content/--style it paints the "
                    "project's example photo in an example style.",
    )
    parser.add_argument("--content", type=Path, default=None,
                        help="content image (default: examples/chelsea.jpg)")
    parser.add_argument("--style", type=Path, action="append", default=None,
                        help="style image; repeat for several (default: examples/swirls.jpg)")
    parser.add_argument("--style-mask", type=Path, action="append", default=None, metavar="MASK",
                        help=STYLE_MASK_HELP)
    parser.add_argument("--output", type=Path, default=Path("out.png"),
                        help="output file: .png, .jpg or .webp")
    add_param_arguments(parser)
    parser.add_argument("--save-every", type=int, default=0, metavar="N",
                        help="also write the picture every N steps (out.0050.png ...)")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="number format of the network: auto (bf16 where the device runs it much faster, "
                             "e.g. a CPU with AMX or an Ampere GPU; fp32 elsewhere), fp32, bf16")
    parser.add_argument("--memory-gb", type=float, default=0.0,
                        help="memory the engine may use at its peak; larger pictures are painted in blocks "
                             "(default: 90%% of a GPU; on a CPU half the RAM, at most 6 GB)")
    parser.add_argument("--weights", choices=("caffe", "torchvision"), default="caffe",
                        help="VGG19 weights: the bundled original Caffe ones, or torchvision's if cached")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from nst_core.progress import StopTransfer
    from nst_core.transfer import StyleTransfer
    from nst_shared.errors import NstError
    from nst_shared.images import encode_image, load_image, output_format
    from nst_shared.masks import check_mask_count, check_mask_covers

    content_path = args.content or DEFAULT_CONTENT
    style_paths = args.style or [DEFAULT_STYLE]
    try:
        params = params_from_args(args, preview_every=args.save_every)
        params.style_weights(len(style_paths))  # one blend weight per style, checked before the network loads
        content = load_image(content_path)
        styles = [load_image(p) for p in style_paths]
        check_mask_count(len(args.style_mask or []), len(style_paths))
        style_masks = [load_image(p) for p in args.style_mask or []]
        for index, mask in enumerate(style_masks):
            check_mask_covers(mask, index)
        engine = StyleTransfer(device=args.device, weights=args.weights, precision=args.precision,
                               memory_budget_bytes=int(args.memory_gb * 2**30) or None)
        params = for_device(params, engine.device.type, explicit=params.model_fields_set)
    except (NstError, ValueError) as exc:
        print(f"nst run: {exc}", file=sys.stderr)
        return 2

    output: Path = args.output
    fmt = output_format(output)
    interrupted = False
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
    task = bar.add_task("painting", total=params.steps, info="")

    def on_progress(p: Any) -> None:
        block = f" block {p.block}/{p.blocks}" if p.block else ""
        bar.update(task, completed=p.step, info=f"scale {p.scale}/{p.scales} {p.width}x{p.height}{block} "
                   f"content {p.content_loss:.3g} style {p.style_loss:.3g}")
        if p.preview is not None and args.save_every and p.step % args.save_every == 0:
            p.preview.save(output.with_name(f"{output.stem}.{p.step:04d}{output.suffix}"))
        if interrupted:
            raise StopTransfer()

    import signal

    def on_interrupt(signum: int, frame: object) -> None:
        nonlocal interrupted
        if interrupted:  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        interrupted = True

    previous = signal.signal(signal.SIGINT, on_interrupt)
    started = time.perf_counter()
    try:
        with bar:
            result = engine.stylize(content, styles, params, style_masks=style_masks, callback=on_progress)
    except NstError as exc:
        print(f"nst run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nst run: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(encode_image(result.image, fmt))
    state = "stopped early" if result.stopped else "done"
    print(f"{state}: {result.steps_done} steps in {time.perf_counter() - started:.1f} s on {engine.device_name} "
          f"({engine.precision})"
          f" -> {output} ({result.image.width}x{result.image.height})")
    return 130 if result.stopped else 0
