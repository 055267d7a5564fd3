"""Print-size pictures on this machine: the whole image against blocks, and the whole print schedule.

Rows: seconds per warm L-BFGS iteration and peak RSS of one transfer at one scale, evaluated on the whole
image and in blocks (exact global Gram, nst_core/objective.py), side by side at each size. Schedules: a whole
default transfer of tiger.jpg + starry.jpg (../shared/images) at print size, with the time of each scale, the
peak RSS and the picture. Each row and each schedule runs in a subprocess of its own (its peak RSS is its own),
with the engine's malloc settings. Usage:
    .venv/bin/python bench/print_bench.py [--sizes 1024 2048] [--iterations 3] [--block-px 512]
    .venv/bin/python bench/print_bench.py --schedule 2048 4096 [--out DIR]
    python3 bench/print_bench.py --device cuda --sizes 4096 8192 --modes blocks   # issue 13's GPU check
On CUDA, "peak" is the device's (torch.cuda.max_memory_allocated), not the process's RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "images"  # the shared pictures beside the project (never copied into it)


def picture(width: int, height: int, seed: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_high_water_mb(reset: bool = False) -> float:
    """The process's peak RSS since the last reset (Linux: VmHWM, reset through clear_refs)."""
    status = Path("/proc/self/status").read_text()
    mb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    return mb


def peak_mb(device: str) -> float:
    """The peak memory that bounds a print: the GPU's on CUDA, the process's RSS on the CPU."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()


def row(size: int, mode: str, iterations: int, block_px: int, precision: str, device: str) -> dict:
    """One scale of `size` px (3:2), `iterations` timed after two warm-up iterations."""
    from nst_core.transfer import StyleTransfer
    from nst_shared.params import TransferParams

    budget = 64 * 2**30 if mode == "whole" else None  # whole: a budget it always fits
    engine = StyleTransfer(
        device=device, precision=precision, memory_budget_bytes=budget, block_px=block_px if mode == "blocks" else None
    )
    engine_mb = peak_mb(device)
    stamps: list[float] = []
    blocks: list[int] = []

    def on_progress(p) -> None:
        if p.block == 0:
            stamps.append(time.perf_counter())
            blocks.append(p.blocks)

    height = size * 2 // 3
    params = TransferParams(max_size=size, steps=iterations + 2, scales=1)
    engine.stylize(picture(size, height, 0), [picture(size, height, 1)], params, callback=on_progress)
    return {
        "size": f"{size}x{height}",
        "mode": mode,
        "precision": engine.precision,
        "blocks": blocks[-1],
        "s_per_iter": (stamps[-1] - stamps[1]) / (len(stamps) - 2),
        "peak_rss_mb": peak_mb(device),
        "engine_mb": engine_mb,
    }


def schedule(size: int, out: str) -> dict:
    """A default transfer of tiger + The Starry Night at `size` px: time per scale, peak RSS, the picture."""
    from nst_core.transfer import StyleTransfer
    from nst_shared.images import load_image
    from nst_shared.memory import plan_memory
    from nst_shared.params import TransferParams
    from nst_shared.schedule import plan_scales

    engine = StyleTransfer(device="cpu")
    content, style = load_image(SHARED / "content" / "tiger.jpg"), load_image(SHARED / "style" / "starry.jpg")
    params = TransferParams(max_size=size)
    plan = plan_scales(content.size, params)
    scale_started: dict[int, float] = {}
    scale_blocks: dict[int, int] = {}
    # Each scale's own peak RSS: the high-water mark since the last report, reset at each; the span before a
    # scale's first report (its targets, its first iteration) is the scale's.
    scale_peak_mb: dict[int, float] = {}
    started = time.perf_counter()

    def on_progress(p) -> None:
        scale_peak_mb[p.scale] = max(scale_peak_mb.get(p.scale, 0.0), rss_high_water_mb(reset=True))
        scale_started.setdefault(p.scale, time.perf_counter())
        scale_blocks[p.scale] = p.blocks
        if p.block:
            print(f"  scale {p.scale}/{p.scales} step {p.step} block {p.block}/{p.blocks}", file=sys.stderr, flush=True)
        else:
            print(
                f"  scale {p.scale}/{p.scales} {p.width}x{p.height} step {p.step}/{p.steps} {p.elapsed_s:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    result = engine.stylize(content, [style], params, callback=on_progress)
    total = time.perf_counter() - started
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        result.image.save(Path(out) / f"tiger_starry_{size}.png")
    # A scale's time: from its first report to the next scale's (its first iteration's time is not counted,
    # an underestimate of one iteration per scale that the total includes).
    marks = [scale_started[i] for i in sorted(scale_started)] + [started + total]
    scales = [
        {
            "size": f"{s.width}x{s.height}",
            "steps": s.steps,
            "blocks": scale_blocks.get(i + 1, 0),
            "s": marks[i + 1] - marks[i],
            "peak_mb": scale_peak_mb.get(i + 1, 0.0),
            "planned_mb": plan_memory(
                s.width, s.height, precision=engine.precision, budget_bytes=engine.memory_budget_bytes
            ).peak_bytes
            / 2**20,
        }
        for i, s in enumerate(plan)
    ]
    return {
        "size": size,
        "precision": engine.precision,
        "total_s": total,
        "peak_rss_mb": max(scale_peak_mb.values()),  # clear_refs resets ru_maxrss too
        "budget_mb": engine.memory_budget_bytes / 2**20,
        "scales": scales,
    }


def run_child(args: list[str]) -> dict | None:
    """The child's result; None (its error printed) when it failed, e.g. out of memory on a GPU."""
    from nst_shared.allocator import with_engine_malloc

    out = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env=with_engine_malloc(os.environ),
        check=False,
    )
    if out.returncode != 0:
        print(f"  {' '.join(args[-3:])}: failed: {out.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1024, 2048])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--block-px", type=int, default=512)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modes", nargs="*", default=["whole", "blocks"], choices=["whole", "blocks"])
    parser.add_argument("--schedule", type=int, nargs="*", default=[], help="print schedules at these sizes")
    parser.add_argument("--out", default="", help="folder for the schedules' pictures")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "row":
            print(json.dumps(row(int(rest[0]), rest[1], args.iterations, args.block_px, args.precision, args.device)))
        else:
            print(json.dumps(schedule(int(rest[0]), args.out)))
        return

    import platform

    print(f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    if args.sizes:
        print(
            f"{'size':>10} {'mode':>7} {'prec':>5} {'blocks':>6} {'s/iter':>8} {'peak MB':>12} "
            f"{'engine MB':>10} {'time ratio':>10} {'RSS ratio':>10}"
        )
    for size in args.sizes:
        rows = [
            run_child(
                [
                    "--iterations",
                    str(args.iterations),
                    "--precision",
                    args.precision,
                    "--device",
                    args.device,
                    "--block-px",
                    str(args.block_px),
                    "--child",
                    "row",
                    str(size),
                    mode,
                ]
            )
            for mode in args.modes
        ]
        first = next((r for r in rows if r), None)
        for r in rows:
            if r is None or first is None:
                continue
            print(
                f"{r['size']:>10} {r['mode']:>7} {r['precision']:>5} {r['blocks']:>6} {r['s_per_iter']:>8.2f} "
                f"{r['peak_rss_mb']:>12.0f} {r['engine_mb']:>10.0f} {r['s_per_iter'] / first['s_per_iter']:>9.2f}x "
                f"{r['peak_rss_mb'] / first['peak_rss_mb']:>9.2f}x",
                flush=True,
            )
    for size in args.schedule:
        r = run_child(["--out", args.out, "--child", "schedule", str(size)])
        if r is None:
            continue
        print(
            f"print schedule at {size} px ({r['precision']}): {r['total_s']:.0f} s in all, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB (memory budget {r['budget_mb']:.0f} MB)"
        )
        print(f"  {'scale':>10}  {'steps':>5}  {'blocks':>6}  {'time':>7}  {'peak RSS':>9}  {'planned':>8}")
        for s in r["scales"]:
            print(
                f"  {s['size']:>10}  {s['steps']:>5}  {s['blocks']:>6}  {s['s']:>5.0f} s  {s['peak_mb']:>6.0f} MB"
                f"  {s['planned_mb']:>5.0f} MB"
            )


if __name__ == "__main__":
    main()
