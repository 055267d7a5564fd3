"""How big can a print be: one scale whole against in blocks, the print schedule of tiger + The Starry Night per
scale against the memory plan, the shared pairs at 512 px beside a print size (bench/README.md has the tables):

    .venv/bin/python bench/print_bench.py rows [--sizes 1024 2048] [--iterations 3] [--device cuda]
    .venv/bin/python bench/print_bench.py schedule [--sizes 4096] [--out DIR]
    .venv/bin/python bench/print_bench.py pairs --out DIR [--sizes 512 2048]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from common import child, noise, parser, print_table, shared_image
from PIL import Image

from nst_core.transfer import StyleTransfer
from nst_shared.images import load_image
from nst_shared.memory import plan_memory
from nst_shared.params import TransferParams
from nst_shared.schedule import plan_scales

ROW = "{size} {mode} {precision} {blocks} {s_per_iter:.2f} {peak_mb:.0f} {time:.2f}x {memory:.2f}x"
PAIRS = (("tiger", "starry"), ("neckarfront", "shipwreck"), ("cityscape", "compositionvii"))


def peak_mb(device: str, reset: bool = False) -> float:
    """The device's peak on CUDA; else the process's RSS high-water mark (VmHWM), reset through clear_refs."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    if not reset:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    status = Path("/proc/self/status").read_text()
    mb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024
    Path("/proc/self/clear_refs").write_text("5")
    return mb


def row(size: int, mode: str, args: argparse.Namespace) -> dict:
    """One 3:2 scale of `size` px, whole or in blocks of --block-px, timed after two warm-up iterations."""
    budget, block_px = (64 * 2**30, None) if mode == "whole" else (None, args.block_px)  # whole: a budget it fits
    engine = StyleTransfer(device=args.device, precision=args.precision, memory_budget_bytes=budget, block_px=block_px)
    stamps, blocks, height = [], [], size * 2 // 3

    def on_progress(p) -> None:
        if p.block == 0:
            stamps.append(time.perf_counter())
            blocks.append(p.blocks)

    params = TransferParams(max_size=size, steps=args.iterations + 2, scales=1)
    engine.stylize(*noise(size, height), params, callback=on_progress)
    s_per_iter = (stamps[-1] - stamps[1]) / (len(stamps) - 2)
    found = {"size": f"{size}x{height}", "mode": mode, "precision": engine.precision, "blocks": blocks[-1]}
    return {**found, "s_per_iter": s_per_iter, "peak_mb": peak_mb(args.device)}


def schedule(size: int, args: argparse.Namespace) -> dict:
    """A default transfer of tiger + The Starry Night at `size` px: each scale's time and peak, the picture."""
    engine, params = StyleTransfer(device=args.device), TransferParams(max_size=size)
    content, style = load_image(shared_image("content", "tiger")), load_image(shared_image("style", "starry"))
    first_report, blocks, peaks, started = {}, {}, {}, time.perf_counter()

    def on_progress(p) -> None:  # a scale's peak: the high-water mark between its reports, reset at each
        peaks[p.scale] = max(peaks.get(p.scale, 0.0), peak_mb(args.device, reset=True))
        first_report.setdefault(p.scale, time.perf_counter())
        blocks[p.scale] = p.blocks
        print(f"  scale {p.scale}/{p.scales} step {p.step} block {p.block}/{p.blocks}", file=sys.stderr, flush=True)

    result = engine.stylize(content, [style], params, callback=on_progress)
    marks = [first_report[i] for i in sorted(first_report)] + [time.perf_counter()]
    if args.out:
        result.image.save(Path(args.out) / f"tiger_starry_{size}.png")
    scales = []
    for i, s in enumerate(plan_scales(content.size, params), start=1):
        plan = plan_memory(s.width, s.height, precision=engine.precision, budget_bytes=engine.memory_budget_bytes)
        row = [f"{s.width}x{s.height}", str(s.steps), str(blocks.get(i, 0)), f"{marks[i] - marks[i - 1]:.0f}"]
        scales.append([*row, f"{peaks.get(i, 0):.0f}", f"{plan.peak_bytes / 2**20:.0f}"])
    found = {"size": size, "precision": engine.precision, "total_s": marks[-1] - started, "scales": scales}
    return {**found, "peak_mb": max(peaks.values()), "budget_mb": engine.memory_budget_bytes / 2**20}


def pairs(args: argparse.Namespace) -> None:
    """The shared pairs at both sizes (defaults, seed 0); the print's centre beside the small one's, enlarged."""
    engine, out, d = StyleTransfer(device=args.device), Path(args.out), 512  # the detail's side
    for content_name, style_name in PAIRS:
        content, style, found = load_image(shared_image("content", content_name)), shared_image("style", style_name), []
        style = load_image(style)
        for size in args.sizes[:2]:
            started = time.perf_counter()
            result = engine.stylize(content, [style], TransferParams(max_size=size, seed=0))
            (image := result.image).save(out / f"{content_name}_{style_name}_{size}.png")
            found.append(image)
            took = f"{image.width}x{image.height}, {result.steps_done} steps in {time.perf_counter() - started:.0f} s"
            print(f"{content_name} + {style_name} at {size} px: {took}", flush=True)
        small, large = found
        left, top = (large.width - d) // 2, (large.height - d) // 2
        box, factor = (left, top, left + d, top + d), large.width / small.width
        both = Image.new("RGB", (2 * d + 8, d), "white")
        both.paste(small.crop(tuple(round(v / factor) for v in box)).resize((d, d), Image.Resampling.LANCZOS))
        both.paste(large.crop(box), (d + 8, 0))
        both.save(out / f"{content_name}_{style_name}_detail.png")


def main() -> None:
    options = parser(__doc__)
    options.add_argument("what", choices=["rows", "schedule", "pairs"])
    options.add_argument("--sizes", type=int, nargs="+", help="rows (1024 2048), schedule (4096), pairs (512 2048)")
    options.add_argument("--iterations", type=int, default=3, help="rows")
    options.add_argument("--block-px", type=int, default=512, help="rows")
    options.add_argument("--precision", default="auto", help="rows")
    options.add_argument("--modes", nargs="+", default=["whole", "blocks"], choices=["whole", "blocks"])
    options.add_argument("--out", default="", help="folder for the pictures (never the project)")
    options.add_argument("--child", help=argparse.SUPPRESS)
    args = options.parse_args()
    args.sizes = args.sizes or {"rows": [1024, 2048], "schedule": [4096], "pairs": [512, 2048]}[args.what]
    Path(args.out or ".").mkdir(parents=True, exist_ok=True)
    passed = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("iterations", "block_px", "precision", "device")]
    if args.child:
        size, _, mode = args.child.partition(":")
        print(json.dumps(row(int(size), mode, args) if mode else schedule(int(size), args)))
    elif args.what == "pairs":
        pairs(args)
    elif args.what == "rows":
        for size in args.sizes:
            found = [child(__file__, ["rows", *passed, f"--child={size}:{m}"]) for m in args.modes]
            rows, first = [], next((r for r in found if r), {})
            for r in filter(None, found):
                ratios = {"time": r["s_per_iter"] / first["s_per_iter"], "memory": r["peak_mb"] / first["peak_mb"]}
                rows.append(ROW.format(**r, **ratios).split())
            print_table(["size", "mode", "prec", "blocks", "s/iter", "peak MB", "time", "memory"], rows)
    else:
        for size in args.sizes:
            if r := child(__file__, ["schedule", *passed, f"--out={args.out}", f"--child={size}"]):
                note = f"{r['total_s']:.0f} s in all, peak {r['peak_mb']:.0f} MB (budget {r['budget_mb']:.0f} MB)"
                print_table(["scale", "steps", "blocks", "s", "peak MB", "planned MB"], r["scales"], [note])


if __name__ == "__main__":
    main()
