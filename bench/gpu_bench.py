"""What only a GPU shows (issue 27): host syncs and kernel launches per L-BFGS step, cudnn.benchmark on against off
at new shapes, one L-BFGS step eager against a CUDA graph of it. The CPU runs it tiny (bench/gpu_check.py's dry run).

    python bench/gpu_bench.py --device cuda [--size 512] [--steps 50] [--json OUT/gpu.json]
"""

from __future__ import annotations

import contextlib
import itertools
import time
import warnings
from typing import Any

import torch
from common import noise, params, parser, print_table, sync, write_json

from nst_core.lbfgs import LBFGS
from nst_core.losses import gram_matrix
from nst_core.tensors import image_to_tensor
from nst_core.transfer import StyleTransfer


def timed(engine: Any, size: int, steps: int, device: str) -> dict[str, float]:
    """The first step at this shape (set-up included) and the median of the later ones."""
    stamps: list[float] = []
    started = time.perf_counter()
    run = params(size, steps, preview_every=0)
    engine.stylize(*noise(size, size), run, callback=lambda _: (sync(device), stamps.append(time.perf_counter())))
    later = sorted(b - a for a, b in itertools.pairwise(stamps))
    return {"first_s": stamps[0] - started, "s_per_iter": later[len(later) // 2]}


def counts(engine: Any, size: int, steps: int, device: str) -> dict[str, float]:
    """Host syncs (sync debug mode's warnings, and the profiler's) and kernel launches per step."""
    activities, on_cuda = [torch.profiler.ProfilerActivity.CPU], device.startswith("cuda")
    if on_cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught, torch.profiler.profile(activities=activities) as profile:
        warnings.simplefilter("always")
        engine.stylize(*noise(size, size), params(size, steps, preview_every=0))
    if on_cuda:
        torch.cuda.set_sync_debug_mode("default")
    names = [event.name for event in profile.events()]
    return {
        "syncs_debug": sum("synchroniz" in str(w.message).lower() for w in caught) / steps,
        "syncs_profiler": sum("Synchronize" in n for n in names) / steps,
        "launches": sum("LaunchKernel" in n for n in names) / steps,
    }


def cudnn_choice(engine: Any, size: int, steps: int, device: str) -> dict[str, Any]:
    """cudnn.benchmark off and on, each at a shape of its own (neither finds the other's tuning)."""
    found = {}
    for setting, shape in (("off", size + 16), ("all", size + 32)):
        engine.cudnn_benchmark = setting
        found[setting] = timed(engine, shape, steps, device)
    engine.cudnn_benchmark = "all"
    extra_s = found["all"]["first_s"] - found["off"]["first_s"]
    saved_s = found["off"]["s_per_iter"] - found["all"]["s_per_iter"]
    break_even = 0 if extra_s <= 0 else (extra_s / saved_s if saved_s > 0 else float("inf"))
    choice = "all" if break_even <= 5 else ("whole" if break_even <= 50 else "off")
    return {**found, "break_even_steps": break_even, "choice": choice}


def graphs(engine: Any, size: int, steps: int, device: str) -> dict[str, Any]:
    """One L-BFGS step on a style loss, eager against a captured CUDA graph of it: ms per step, loss after."""
    layers, (content, (style,)) = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"], noise(size, size)
    with torch.no_grad():
        targets = {n: gram_matrix(f) for n, f in engine.net(image_to_tensor(style, engine.device), layers).items()}

    def run(graphed: bool) -> dict[str, Any]:
        image = image_to_tensor(content, engine.device).contiguous().requires_grad_(True)
        optimizer = LBFGS(image, history_size=20)

        def closure() -> torch.Tensor:
            feats = engine.net(image, layers)
            loss = sum(((gram_matrix(feats[n]) - targets[n]) ** 2).sum() for n in layers) * 1e3
            loss.backward()
            return loss

        with torch.cuda.stream(torch.cuda.Stream()) if graphed else contextlib.nullcontext():
            for _ in range(5):  # warm-up, on a side stream before a capture
                optimizer.step(closure)
        graph = torch.cuda.CUDAGraph() if graphed else None
        if graph is not None:
            with torch.cuda.graph(graph):
                optimizer.step(closure)
        sync(device)
        started = time.perf_counter()
        for _ in range(steps):
            graph.replay() if graph is not None else optimizer.step(closure)
        sync(device)
        return {"ms_per_step": (time.perf_counter() - started) / steps * 1e3, "loss": float(optimizer.loss)}

    found: dict[str, Any] = {"eager": run(False)}
    try:
        found["graph"] = run(True)
    except Exception as exc:  # what failed to capture (or no CUDA) is the finding
        found["graph"] = {"error": f"{type(exc).__name__}: {(str(exc) or '-').splitlines()[0]}"[:160]}
    return found


def main() -> None:
    options = parser(__doc__, device="cuda")
    options.add_argument("--precision", default="auto")
    options.add_argument("--size", type=int, default=512)
    options.add_argument("--steps", type=int, default=50, help="graphs' steps; the others run a fifth of them")
    args = options.parse_args()
    engine, few, size = StyleTransfer(device=args.device, precision=args.precision), max(3, args.steps // 5), args.size
    step, cudnn = counts(engine, size, few, args.device), cudnn_choice(engine, size, few, args.device)
    found = {"size": size, "precision": engine.precision, "per_step": step, "cudnn": cudnn}
    found["graphs"] = graphs(engine, size, args.steps, args.device)
    (off, tuned), (eager, graph) = (cudnn["off"], cudnn["all"]), found["graphs"].values()
    syncs = f"{step['syncs_debug']:.1f} / {step['syncs_profiler']:.1f}"
    graphed = graph.get("error") or f"{graph['ms_per_step']:.2f} ({graph['loss']:.4g})"
    rows = [
        [f"host syncs a step, debug / profiler ({size} px)", syncs],
        ["kernel launches a step", f"{step['launches']:.0f}"],
        ["cudnn.benchmark off / all: first step s", f"{off['first_s']:.3f} / {tuned['first_s']:.3f}"],
        ["cudnn.benchmark off / all: ms a step", f"{off['s_per_iter'] * 1e3:.2f} / {tuned['s_per_iter'] * 1e3:.2f}"],
        ["NST_CUDNN_BENCHMARK that pays", f"{cudnn['choice']} (break-even {cudnn['break_even_steps']:.0f} steps)"],
        ["L-BFGS step eager: ms (loss after)", f"{eager['ms_per_step']:.2f} ({eager['loss']:.4g})"],
        ["L-BFGS step CUDA graph: ms (loss after)", graphed],
    ]
    print_table(["measure", "value"], rows)
    write_json(args.json, found)


if __name__ == "__main__":
    main()
