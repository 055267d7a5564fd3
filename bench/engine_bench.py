"""How fast is an iteration, and how fast does the engine reach a picture (bench/README.md says what each measures):

.venv/bin/python bench/engine_bench.py iteration [--sizes 256 512] [--precisions fp32 auto] [--device cuda]
.venv/bin/python bench/engine_bench.py objective [--size 512] [--steps 300] [--runs 1:fp32 1:auto 3:auto]
.venv/bin/python bench/engine_bench.py largest --device cuda [--sizes 4096 6144 8192]
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import sys
import time
from typing import Any

import torch
from common import child, noise, params, parser, print_table, shared_image, sheet, sync, write_json
from torch.utils.flop_counter import FlopCounterMode

from nst_core.losses import gram_matrix
from nst_core.objective import evaluate_whole
from nst_core.precision import DTYPES, apply_fp32_matmul_mode
from nst_core.progress import StopTransfer
from nst_core.tensors import image_to_tensor, tensor_to_image
from nst_core.transfer import StyleTransfer
from nst_shared.errors import DeviceOutOfMemory
from nst_shared.images import load_image, resize
from nst_shared.memory import plan_memory

LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]


def matmul_peak(device: str, precision: str, n: int) -> float:
    """GFLOP/s of an n x n matrix product in `precision`, median of ten after warm-up, IEEE float32 for fp32."""
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


def iteration(size: int, precision: str, args) -> dict[str, Any]:
    """One warm row (run as a child): the median step after two warm-up steps, one step's FLOPs, the peak memory."""
    engine, device, stamps = StyleTransfer(device=args.device, precision=precision), args.device, []
    x = torch.rand(1, 3, size, size, device=device, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        feats = engine.net(x, LAYERS)
        (sum(gram_matrix(feats[n]).sum() for n in LAYERS) + feats["relu4_2"].float().sum()).backward()
    on_cuda = device.startswith("cuda")
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    run = params(size, args.iterations + 2, preview_every=0)
    engine.stylize(*noise(size, size), run, callback=lambda _: (sync(device), stamps.append(time.perf_counter())))
    peak = torch.cuda.max_memory_allocated() if on_cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    plan = plan_memory(size, size, precision=engine.precision, budget_bytes=engine.memory_budget_bytes)
    steady = statistics.median(b - a for a, b in itertools.pairwise(stamps[1:]))
    mb, flop = {"peak_mb": peak / 2**20, "plan_mb": plan.peak_bytes / 2**20}, counter.get_total_flops() / 1e9
    return {"size": size, "precision": engine.precision, "s_per_iter": steady, "gflop_per_iter": flop, **mb}


def bench_iteration(args) -> dict[str, Any]:
    peaks = {p: matmul_peak(args.device, p, args.matmul_n) for p in ("fp32", "bf16")}
    rows, found = [], []
    for precision, size in itertools.product(args.precisions, args.sizes or [256, 512]):
        passed = [f"--device={args.device}", f"--iterations={args.iterations}", f"--precisions={precision}"]
        r = child(__file__, ["iteration", *passed, f"--child={size}"]) or sys.exit(1)
        rate = r["gflop_per_iter"] / r["s_per_iter"]
        r["pct_of_peak"] = 100 * rate / peaks[r["precision"]]
        found.append(r)
        cells = "{size} {precision} {ms:.1f} {gflop_per_iter:.0f} {rate:.0f} {pct_of_peak:.0f}%"
        cells += " {peak_mb:.0f} {plan_mb:.0f} {s300:.1f}"
        rows.append(cells.format(**r, ms=r["s_per_iter"] * 1e3, rate=rate, s300=300 * r["s_per_iter"]).split())
    header = ["size", "prec", "ms/iter", "GFLOP/it", "GFLOP/s", "% peak", "peak MB", "plan MB", "300 it s"]
    print_table(header, rows, [f"matmul peaks this run: fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s"])
    return {"device": args.device, "peaks_gflops": peaks, "rows": found}


def bench_objective(args) -> dict[str, Any]:
    """The plain way (torch's L-BFGS, float32, one scale) sets the target; each of ours is timed until it scores as
    well (the scoring not counted)."""
    content, style = load_image(shared_image("content", "tiger")), load_image(shared_image("style", "starry"))
    base, judge = params(args.size, args.steps), StyleTransfer(device=args.device, precision="fp32")
    run = judge._start(content, [style], [], base, None)  # the engine's own loss at the full size, in float32
    scale = run.plan[-1]
    photo = image_to_tensor(resize(run.content_work, scale.size), judge.device)
    terms = judge._loss_terms(run, photo, scale, None)

    def evaluate(image):  # a tensor at the full size; the gradient is left in image.grad
        return evaluate_whole(judge.net, image, terms)[3]

    def score(picture) -> float:
        return float(evaluate(image_to_tensor(resize(picture, scale.size), judge.device).requires_grad_(True)))

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
    plain_s, pictures = time.perf_counter() - started, [tensor_to_image(image.detach())]
    target = score(pictures[0])
    rows, found = [["plain fp32 x1", f"{plain_s:.2f}", str(evaluations), f"{target:.4g}", "1.000"]], []
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
        sheet([pictures], args.picture)
    print_table(["run", "time s", "steps", "objective", "time ratio"], rows, [f"{args.size} px, {args.device}"])
    return {"device": args.device, "size": args.size, "plain_s": plain_s, "plain_objective": target, "runs": found}


def bench_largest(args) -> dict[str, Any]:
    """Single-scale sizes in increasing order, two steps each, until one runs out of memory."""
    engine, found = StyleTransfer(device=args.device), []
    for size in args.sizes or [4096, 6144, 8192]:
        started = time.perf_counter()
        try:
            engine.stylize(*noise(size, size), params(size, 2, preview_every=0))
            found.append({"size": size, "fits": True, "s": time.perf_counter() - started})
        except DeviceOutOfMemory as exc:
            found.append({"size": size, "fits": False, "error": str(exc)[:200]})
            break
        finally:
            write_json(args.json, {"device": args.device, "sizes": found})  # a step stopped at its limit keeps these
    rows = [[str(f["size"]), str(f["fits"]), f"{f.get('s', 0):.1f}"] for f in found]
    print_table(["size", "fits", "2 steps s"], rows)
    return {"device": args.device, "precision": engine.precision, "sizes": found}


def main() -> None:
    options = parser(__doc__)
    options.add_argument("what", choices=["iteration", "objective", "largest"])
    options.add_argument("--sizes", type=int, nargs="+", help="iteration (256 512), largest (4096 6144 8192)")
    options.add_argument("--precisions", nargs="+", default=["fp32", "auto"], help="iteration")
    options.add_argument("--iterations", type=int, default=6, help="iteration: steps timed after two warm-up steps")
    options.add_argument("--matmul-n", type=int, default=4096, help="iteration: the peak's matrix size")
    options.add_argument("--size", type=int, default=512, help="objective: the picture's longest side")
    options.add_argument("--steps", type=int, default=300, help="objective: the plain way's evaluations")
    options.add_argument("--runs", nargs="+", default=["1:fp32", "1:auto", "3:auto"], help="objective: ours")
    options.add_argument("--picture", help="objective: the pictures side by side (PNG)")
    options.add_argument("--child", help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.child:
        return print(json.dumps(iteration(int(args.child), args.precisions[0], args)))
    commands = {"iteration": bench_iteration, "objective": bench_objective, "largest": bench_largest}
    write_json(args.json, commands[args.what](args))


if __name__ == "__main__":
    main()
