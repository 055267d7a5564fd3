"""How fast is an iteration, and how fast does the engine reach a picture: on the CPU or a GPU (--device).

    .venv/bin/python bench/engine_bench.py iteration [--sizes 256 512] [--precisions fp32 auto] [--device cuda]
    .venv/bin/python bench/engine_bench.py objective [--size 512] [--steps 300] [--runs 1:fp32 1:auto 3:auto]
    .venv/bin/python bench/engine_bench.py largest --device cuda [--sizes 4096 6144 8192]

iteration: seconds per warm L-BFGS iteration, GFLOP per iteration (torch's flop counter) and GFLOP/s against the
matmul peak of the row's precision measured in the same run, and the peak memory (RSS on the CPU, each row in a
process of its own with the engine's malloc settings; the device's on CUDA, beside the memory plan's).
objective: the engine's own objective (the loss it minimises, relative weights included), scored in float32 at
the full size; the plain way (torch's L-BFGS, 20 evaluations a step, float32, one scale, --steps evaluations)
sets the target, then each of ours (scales:precision) is timed until its picture scores as well. largest: the
largest single-scale size that runs two steps. --json writes the results for bench/gpu_check.py.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import print_table, shared_image

LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str, precision: str, n: int) -> float:
    """GFLOP/s of an n x n matrix product in `precision`, median of ten after warm-up, IEEE float32 for fp32."""
    import torch

    from nst_core.precision import DTYPES, apply_fp32_matmul_mode

    if device.startswith("cuda"):
        apply_fp32_matmul_mode("ieee")
    a, b = (torch.rand(n, n, device=device, dtype=DTYPES[precision]) for _ in range(2))
    times = []
    for _ in range(13):
        sync(device)
        started = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - started)
    return 2 * n**3 / statistics.median(times[3:]) / 1e9


def noise(size: int, seed: int):
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def params(size: int, steps: int, **more: Any):
    """Unvalidated (model_copy): `largest` goes past the API's bounds to find what fits."""
    from nst_shared.params import TransferParams

    return TransferParams().model_copy(update=dict(max_size=size, steps=steps, scales=1, seed=0, **more))


def iteration(size: int, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    """One warm row: the median step after two warm-up steps, the FLOPs of one step, the peak memory."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nst_core.losses import gram_matrix
    from nst_core.transfer import StyleTransfer
    from nst_shared.memory import plan_memory

    engine, device = StyleTransfer(device=args.device, precision=precision), args.device
    x = torch.rand(1, 3, size, size, device=device, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        feats = engine.net(x, LAYERS)
        (sum(gram_matrix(feats[n]).sum() for n in LAYERS) + feats["relu4_2"].float().sum()).backward()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    stamps: list[float] = []
    run = params(size, args.iterations + 2, preview_every=0)

    def on_step(_) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    engine.stylize(noise(size, 0), [noise(size, 1)], run, callback=on_step)
    on_cuda = device.startswith("cuda")
    peak = torch.cuda.max_memory_allocated() if on_cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    plan = plan_memory(size, size, precision=engine.precision, budget_bytes=engine.memory_budget_bytes)
    steady = statistics.median(b - a for a, b in itertools.pairwise(stamps[1:]))
    flop = counter.get_total_flops()
    mb = {"peak_mb": peak / 2**20, "plan_mb": plan.peak_bytes / 2**20}
    return {"size": size, "precision": engine.precision, "s_per_iter": steady, "gflop_per_iter": flop / 1e9, **mb}


def bench_iteration(args: argparse.Namespace) -> dict[str, Any]:
    peaks = {p: matmul_peak(args.device, p, args.matmul_n) for p in ("fp32", "bf16")}
    rows, found = [], []
    for precision in args.precisions:
        for size in args.sizes:
            passed = [f"--device={args.device}", f"--iterations={args.iterations}", f"--precisions={precision}"]
            r = child(["iteration", *passed, f"--child={size}"])
            rate = r["gflop_per_iter"] / r["s_per_iter"]
            r["pct_of_peak"] = 100 * rate / peaks[r["precision"]]
            found.append(r)
            cells = "{size} {precision} {ms:.1f} {gflop_per_iter:.0f} {rate:.0f} {pct_of_peak:.0f}%"
            cells += " {peak_mb:.0f} {plan_mb:.0f} {s300:.1f}"
            rows.append(cells.format(**r, ms=r["s_per_iter"] * 1e3, rate=rate, s300=300 * r["s_per_iter"]).split())
    header = ["size", "prec", "ms/iter", "GFLOP/it", "GFLOP/s", "% peak", "peak MB", "plan MB", "300 it s"]
    print_table(header, rows, [f"matmul peaks this run: fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s"])
    return {"device": args.device, "peaks_gflops": peaks, "rows": found}


def engine_objective(content, style, run_params, device: str):
    """The engine's own loss of a picture at the full size, on a float32 engine: what L-BFGS minimises."""
    from nst_core.objective import evaluate_whole
    from nst_core.tensors import image_to_tensor
    from nst_core.transfer import StyleTransfer
    from nst_shared.images import resize

    judge = StyleTransfer(device=device, precision="fp32")
    run = judge._start(content, [style], [], run_params.model_copy(update={"scales": 1}), None)
    scale = run.plan[-1]
    photo = image_to_tensor(resize(run.content_work, scale.size), judge.device)
    terms = judge._loss_terms(run, photo, scale, None)

    def evaluate(image):  # a tensor at the full size; the gradient is left in image.grad
        return evaluate_whole(judge.net, image, terms)[3]

    def score(picture) -> float:
        return float(evaluate(image_to_tensor(resize(picture, scale.size), judge.device).requires_grad_(True)))

    return photo, evaluate, score


def bench_objective(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from nst_core.progress import StopTransfer
    from nst_core.tensors import tensor_to_image
    from nst_core.transfer import StyleTransfer
    from nst_shared.images import load_image

    content, style = load_image(args.content), load_image(args.style)
    base = params(args.size, args.steps)
    photo, evaluate, score = engine_objective(content, style, base, args.device)
    image, evaluations = photo.clone().requires_grad_(True), 0
    optimizer = torch.optim.LBFGS([image], max_iter=20, history_size=100)

    def closure():
        nonlocal evaluations
        optimizer.zero_grad()
        evaluations += 1
        return evaluate(image)

    started = time.perf_counter()
    while evaluations < args.steps:
        optimizer.step(closure)
    sync(args.device)
    plain_s, target = time.perf_counter() - started, score(tensor_to_image(image.detach()))
    rows, found = [["plain fp32 x1", f"{plain_s:.2f}", str(evaluations), f"{target:.4g}", "1.000"]], []
    pictures = [tensor_to_image(image.detach())]
    for spec in args.runs:
        scales, _, precision = spec.partition(":")
        engine, scoring, reached = StyleTransfer(device=args.device, precision=precision), [0.0], {}

        def watch(p, target=target, scoring=scoring, reached=reached) -> None:
            if p.scale == p.scales and p.total_loss <= 1.05 * target and p.preview is not None:
                started = time.perf_counter()
                value = score(p.preview)
                scoring[0] += time.perf_counter() - started
                if value <= target:
                    reached.update(step=p.step, s=p.elapsed_s - scoring[0], objective=value, picture=p.preview)
                    raise StopTransfer

        run = base.model_copy(update={"scales": int(scales), "preview_every": 1})
        engine.stylize(content, [style], run, callback=watch)
        if reached:
            pictures.append(reached.pop("picture"))
        found.append({"run": f"{scales}:{engine.precision}", **reached})
        s = f"{reached['s']:.2f}" if reached else f"not in {args.steps} steps"
        ratio = f"{reached['s'] / plain_s:.3f}" if reached else "-"
        rows.append([f"ours {engine.precision} x{scales}", s, str(reached.get("step", "-")), f"{target:.4g}", ratio])
    if args.picture:
        from common import sheet

        sheet(pictures, args.picture)
    print_table(["run", "time s", "steps", "objective", "time ratio"], rows, [f"{args.size} px, {args.device}"])
    return {"device": args.device, "size": args.size, "plain_s": plain_s, "plain_objective": target, "runs": found}


def bench_largest(args: argparse.Namespace) -> dict[str, Any]:
    """Single-scale sizes in increasing order, two steps each, until one runs out of memory."""
    from nst_core.transfer import StyleTransfer
    from nst_shared.errors import DeviceOutOfMemory

    engine, found = StyleTransfer(device=args.device), []
    for size in args.sizes:
        started = time.perf_counter()
        try:
            engine.stylize(noise(size, 0), [noise(size, 1)], params(size, 2, preview_every=0))
            found.append({"size": size, "fits": True, "s": time.perf_counter() - started})
        except DeviceOutOfMemory as exc:
            found.append({"size": size, "fits": False, "error": str(exc)[:200]})
            break
        finally:
            write_json(args, {"device": args.device, "sizes": found})  # a step stopped at its limit keeps these
    rows = [[str(f["size"]), str(f["fits"]), f"{f.get('s', 0):.1f}"] for f in found]
    print_table(["size", "fits", "2 steps s"], rows)
    return {"device": args.device, "precision": engine.precision, "sizes": found}


def child(argv: list[str]) -> dict[str, Any]:
    from nst_shared.allocator import with_engine_malloc

    env = with_engine_malloc(os.environ)
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_json(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["iteration", "objective", "largest"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto"])
    parser.add_argument("--iterations", type=int, default=6, help="iteration: steps timed after two warm-up steps")
    parser.add_argument("--matmul-n", type=int, default=4096)
    parser.add_argument("--size", type=int, default=512, help="objective: the picture's longest side")
    parser.add_argument("--steps", type=int, default=300, help="objective: the plain way's evaluations")
    parser.add_argument("--runs", nargs="+", default=["1:fp32", "1:auto", "3:auto"], help="objective: ours")
    parser.add_argument("--content", default=None)
    parser.add_argument("--style", default=None)
    parser.add_argument("--picture", help="objective: the pictures side by side (PNG)")
    parser.add_argument("--json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(iteration(int(args.child), args.precisions[0], args)))
        return
    args.sizes = args.sizes or ([256, 512] if args.what == "iteration" else [4096, 6144, 8192])
    args.content = args.content or shared_image("content", "tiger")
    args.style = args.style or shared_image("style", "starry")
    commands = {"iteration": bench_iteration, "objective": bench_objective, "largest": bench_largest}
    write_json(args, commands[args.what](args))


if __name__ == "__main__":
    main()
