"""The measurements of bench/gpu_check.py, one kind per command, each printing a table and writing JSON:

    python bench/gpu_bench.py engine --device cuda --sizes 512 1024 2048 --json OUT/engine.json
    python bench/gpu_bench.py objective --device cuda --size 512 --json OUT/objective.json --picture OUT/o.png
    python bench/gpu_bench.py service --device cuda --jobs 5 --json OUT/service.json --picture OUT/s.png
    python bench/gpu_bench.py largest --device cuda --sizes 3072 4096 6144 8192 --json OUT/largest.json
    python bench/gpu_bench.py graphs --device cuda --size 512 --iterations 50 --json OUT/graphs.json

engine: seconds per warm L-BFGS iteration, GFLOP/s against the bf16, TF32 and fp32 matmul peaks measured in the
same run, peak device memory, the first iteration of a new shape against the steady state with cudnn.benchmark
on and off, host syncs and kernel launches per step. objective: time to the seed's 300-step objective against
the seed's algorithm on the same device. service: `nst up` with its embedded Redis and one worker, jobs by curl
with their event streams, the PNGs checked, submit-to-result seconds and queue pickup. largest: the largest
single-scale size that runs two steps without running out of device memory. graphs: one L-BFGS step eager
against a CUDA graph of it. The CPU runs them all at tiny
sizes (the dry run that tests this plumbing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
IMAGE_PLACES = (ROOT.parent / "shared" / "images", ROOT / ".gpu-trip" / "images")  # beside the repo; the trip
TABLE = "--- table ---"  # bench/gpu_check.py copies what follows this line into its summary


def shared_image(kind: str, name: str, fallback: str) -> str:
    """A shared picture (never copied into the repository), else one of examples/."""
    for place in IMAGE_PLACES:
        for candidate in (place / kind / name, place / name):
            if candidate.is_file():
                return str(candidate)
    return str(ROOT / "examples" / fallback)


def print_table(header: list[str], rows: list[list[str]], notes: list[str] = ()) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print(TABLE)
    for line in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths)))
    for note in notes:
        print(note)
    sys.stdout.flush()


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------- engine


def matmul_peaks(device: str, n: int) -> dict[str, float]:
    """TFLOP/s of an n x n x n matrix product in bf16, TF32 (float32 inputs on the tensor cores) and plain
    float32, median of ten after warm-up, on random data."""
    import torch

    from nst_core.precision import apply_fp32_matmul_mode

    peaks = {}
    saved = torch.backends.cuda.matmul.fp32_precision
    kinds = {"bf16": (torch.bfloat16, "ieee"), "tf32": (torch.float32, "tf32"), "fp32": (torch.float32, "ieee")}
    try:
        for name, (dtype, mode) in kinds.items():
            if not device.startswith("cuda") and name == "tf32":
                continue  # no TF32 off NVIDIA GPUs
            apply_fp32_matmul_mode(mode)
            a, b = (torch.rand(n, n, device=device, dtype=dtype) for _ in range(2))
            times = []
            for i in range(13):
                synchronize(device)
                started = time.perf_counter()
                a @ b
                synchronize(device)
                if i >= 3:
                    times.append(time.perf_counter() - started)
            peaks[name] = 2 * n**3 / statistics.median(times) / 1e12
    finally:
        torch.backends.cuda.matmul.fp32_precision = saved
    return peaks


def flops_per_iteration(engine: Any, size: int, device: str) -> float:
    """FLOPs of one iteration at size x size: the forward to relu5_1, the Grams and the backward to the image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nst_core.losses import gram_matrix

    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
    x = torch.rand(1, 3, size, size, device=device, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        feats = engine.model(x.contiguous(memory_format=torch.channels_last), layers)
        loss = sum(gram_matrix(feats[n]).sum() for n in layers if n != "relu4_2") + feats["relu4_2"].float().sum()
        loss.backward()
    return float(counter.get_total_flops())


def picture(size: int, seed: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([np.sin(x / 9 + seed), np.cos(y / 13), np.sin((x + y) / 17)], axis=-1) * 90 + 128
    return Image.fromarray((base + rng.normal(0, 25, base.shape)).clip(0, 255).astype(np.uint8))


def params_for(size: int, steps: int, **more: Any) -> Any:
    """Parameters for a single-scale run at `size`, unvalidated (model_copy): the bench goes past the API's
    2048 px bound to find what fits."""
    from nst_shared.params import TransferParams

    return TransferParams().model_copy(
        update=dict(max_size=size, steps=steps, scales=1, seed=0, preview_every=0, **more)
    )


def timed_run(
    engine: Any, size: int, measure: int, *, device: str, warmup: int = 2, count_steps: int = 0
) -> dict[str, Any]:
    """One transfer at size x size: the time to the first step (setup and the first iteration at a shape), the
    median of `measure` steps after `warmup`, peak device memory, and then, over `count_steps` more steps (not
    timed: the profiler slows them), host syncs and kernel launches per step (sync debug mode, and the
    profiler's runtime calls)."""
    import torch

    steps = warmup + measure + count_steps
    count_from = warmup + measure if count_steps else None  # counted: the steps after this one's callback
    stamps: list[float] = []
    counting: dict[str, Any] = {}

    def on_step(progress: Any) -> None:
        stamps.append(time.perf_counter())
        if count_from is None:
            return
        if progress.step == count_from:
            if device.startswith("cuda"):
                torch.cuda.set_sync_debug_mode("warn")
            counting["profiler"] = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU]
                + ([torch.profiler.ProfilerActivity.CUDA] if device.startswith("cuda") else [])
            )
            counting["profiler"].start()
            counting["warnings_before"] = len(caught)
        elif progress.step == steps and "profiler" in counting:
            if device.startswith("cuda"):
                torch.cuda.set_sync_debug_mode("default")
            counting["profiler"].stop()
            counting["syncs"] = sum(
                "synchroniz" in str(w.message).lower() for w in caught[counting["warnings_before"] :]
            )

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        engine.stylize(picture(size, 0), [picture(size, 1)], params_for(size, steps), callback=on_step)
    steady = [b - a for a, b in zip(stamps[warmup - 1 :], stamps[warmup : warmup + measure])]
    out: dict[str, Any] = {
        "first_s": stamps[0] - started,
        "s_per_iter": statistics.median(steady),
        "measured_steps": len(steady),
    }
    if device.startswith("cuda"):
        out["peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
        out.update(memory_against_plan(engine, size, torch.cuda.max_memory_allocated()))
    if "profiler" in counting:
        names = [event.name for event in counting["profiler"].events()]
        on_cuda = device.startswith("cuda")
        out["syncs_per_step_debug"] = counting.get("syncs", 0) / count_steps if on_cuda else None
        out["syncs_per_step_profiler"] = sum("Synchronize" in n for n in names) / count_steps
        out["launches_per_step"] = sum("LaunchKernel" in n for n in names) / count_steps
        out["memcpy_per_step"] = sum(n.startswith("cudaMemcpy") for n in names) / count_steps
    return out


def memory_against_plan(engine: Any, size: int, peak_bytes: int) -> dict[str, Any]:
    """The memory plan's peak at size x size beside the measured one, and the per-pixel evaluation rate that
    would have made them equal (nst_shared/memory.py's EVALUATION_BYTES_PER_PX, measured on this GPU)."""
    from nst_shared import memory

    plan = memory.plan_memory(size, size, precision=engine.precision, budget_bytes=engine.memory_budget_bytes)
    found: dict[str, Any] = {"plan_gb": plan.peak_bytes / 1e9, "blocks": plan.grid}
    if plan.grid is None:
        rate = memory.EVALUATION_BYTES_PER_PX[engine.precision]
        rest = plan.peak_bytes - rate * size * size  # the engine, the image-sized state, the history
        found["evaluation_b_per_px"] = round((peak_bytes - rest) / (size * size))
    return found


def memory_advice(rows: list[dict[str, Any]]) -> list[str]:
    """What to set in nst_shared/memory.py from the rows' measured rates (whole-image rows only)."""
    notes = []
    for precision in sorted({r["precision"] for r in rows if "evaluation_b_per_px" in r}):
        mine = [r for r in rows if r.get("precision") == precision and "evaluation_b_per_px" in r]
        rates = ", ".join(f"{r['size']} px {r['evaluation_b_per_px']}" for r in mine)
        worst = max(r["evaluation_b_per_px"] for r in mine)
        notes.append(f"memory plan, {precision}: measured evaluation B/px {rates}; set the GPU rate to {worst}")
    return notes


def bench_engine(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from nst_core.transfer import StyleTransfer

    device = args.device
    peaks = matmul_peaks(device, args.matmul_n)
    print("matmul peaks, TFLOP/s: " + ", ".join(f"{k} {v:.3g}" for k, v in peaks.items()), flush=True)
    rows, results = [], []
    for precision in args.precisions:
        engine = StyleTransfer(device=device, precision=precision)
        for size in args.sizes:
            measure = max(3, int(args.iterations * (args.sizes[0] / size) ** 2))
            flop = flops_per_iteration(engine, size, device)
            run = timed_run(engine, size, measure, device=device, warmup=args.warmup, count_steps=args.count_steps)
            rate = flop / run["s_per_iter"] / 1e12
            peak_key = "bf16" if precision == "bf16" else ("tf32" if "tf32" in peaks else "fp32")
            result = {
                "precision": precision,
                "size": size,
                "gflop_per_iter": flop / 1e9,
                "tflops": rate,
                "pct_bf16_peak": 100 * rate / peaks["bf16"],
                "pct_own_peak": 100 * rate / peaks[peak_key],
                **run,
            }
            results.append(result)
            print(json.dumps(result), flush=True)
            rows.append(
                [
                    str(size),
                    precision,
                    f"{run['s_per_iter'] * 1e3:.2f}",
                    f"{flop / 1e9:.0f}",
                    f"{rate * 1e3:.0f}",
                    f"{result['pct_bf16_peak']:.0f}%",
                    f"{result['pct_own_peak']:.0f}% {peak_key}",
                    f"{run.get('peak_gb', 0):.2f}",
                    _fmt(run.get("plan_gb")),
                    f"{run['first_s']:.2f}",
                    _fmt(run.get("syncs_per_step_debug")),
                    _fmt(run.get("syncs_per_step_profiler")),
                    _fmt(run.get("launches_per_step")),
                    f"{300 * run['s_per_iter']:.2f}",
                ]
            )
        if not args.skip_cudnn:
            tuning = cudnn_benchmark_cost(engine, args.sizes[0], device, warmup=args.warmup, measure=args.iterations)
            tuning["precision"] = precision
            results.append({"cudnn_benchmark": tuning})
            print(json.dumps({"cudnn_benchmark": tuning}), flush=True)
        del engine
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    header = [
        "size",
        "prec",
        "ms/iter",
        "GFLOP/it",
        "GFLOP/s",
        "% bf16 pk",
        "% own pk",
        "peak GB",
        "plan GB",
        "1st s",
        "syncs dbg",
        "syncs prof",
        "launches",
        "300 it s",
    ]
    notes = ["matmul peaks this run: " + ", ".join(f"{k} {v:.3g} TFLOP/s" for k, v in peaks.items())]
    for item in results:
        if "cudnn_benchmark" in item:
            t = item["cudnn_benchmark"]
            notes.append(
                f"cudnn.benchmark at new shapes ({t['precision']}, ~{t['size']} px): first step "
                f"{t['on']['first_s']:.3f} s on / {t['off']['first_s']:.3f} s off, steady "
                f"{t['on']['s_per_iter'] * 1e3:.2f} / {t['off']['s_per_iter'] * 1e3:.2f} ms; "
                + (
                    f"tuning pays after {t['break_even_steps']} steps"
                    if t["break_even_steps"].isdigit()
                    else "tuning does not pay (no faster steps)"
                )
                + f": set NST_CUDNN_BENCHMARK={t['choice']}"
            )
    notes += memory_advice([r for r in results if "size" in r])
    print_table(header, rows, notes)
    return {"device": _device_name(device), "torch": torch.__version__, "peaks_tflops": peaks, "rows": results}


def cudnn_benchmark_cost(engine: Any, size: int, device: str, *, warmup: int, measure: int) -> dict[str, Any]:
    """The first step at a shape never run before and the steady state, with cudnn.benchmark off and on (each
    at a shape of its own, so neither finds the other's tuning)."""

    saved = engine.cudnn_benchmark  # the engine sets cuDNN's flag at every scale from its own choice
    found = {}
    try:
        for setting, shape in (("off", size + 16), ("on", size + 32)):
            engine.cudnn_benchmark = "all" if setting == "on" else "off"
            found[setting] = timed_run(engine, shape, measure, device=device, warmup=warmup)
    finally:
        engine.cudnn_benchmark = saved
    extra_first = found["on"]["first_s"] - found["off"]["first_s"]
    saved_per_step = found["off"]["s_per_iter"] - found["on"]["s_per_iter"]
    break_even = (
        f"{extra_first / saved_per_step:.0f}"
        if saved_per_step > 0 and extra_first > 0
        else ("0" if extra_first <= 0 else "never")
    )
    # A whole-image scale runs ~100 steps at one shape; a print's block scales run ~20, each at up to four shapes.
    steps = float(break_even) if break_even.isdigit() else math.inf
    choice = "all" if steps <= 5 else ("whole" if steps <= 50 else "off")
    return {"size": size, "on": found["on"], "off": found["off"], "break_even_steps": break_even, "choice": choice}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _device_name(device: str) -> str:
    import platform

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or "cpu"


# ------------------------------------------------------------------------------------------- objective


def bench_objective(args: argparse.Namespace) -> dict[str, Any]:
    """The seed's algorithm on this device (first, in a fresh process state: its own cuDNN and matmul
    defaults), then ours single-scale on the seed's objective: one run with a preview every step finds the first
    step whose picture, scored on the float32 network, reaches the seed's objective; a second, warm run without
    previews gives the time to that step."""
    import torch

    from bench import engine_bench
    from bench.objective_bench import seed_objective
    from nst_core.features import load_caffe_weights
    from nst_core.transfer import StyleTransfer

    device, size = args.device, args.size
    engine_bench._WEIGHTS = load_caffe_weights()
    seed = engine_bench.seed_run(size, args.content, args.style, device=device, steps=args.seed_steps)
    target = seed["objective"]
    print(f"seed: {args.seed_steps} steps in {seed['time_s']:.2f} s, objective {target:.4g}", flush=True)
    content, style, _, _ = engine_bench.objective_pictures(size, args.content, args.style)
    engine = StyleTransfer(device=device, precision=args.precision)
    params = params_for(size, args.seed_steps, style_weight=engine_bench.SEED_STYLE_WEIGHT, style_layer_weights=None)
    reached: dict[str, Any] = {}

    def score(progress: Any) -> None:
        if progress.total_loss <= target * 1.05 and progress.preview is not None:
            # Scored as the seed's picture was, in IEEE float32 whatever the engine set for its own products.
            saved = torch.backends.cuda.matmul.fp32_precision
            torch.backends.cuda.matmul.fp32_precision = "ieee"
            try:
                objective = seed_objective(
                    progress.preview, content, style, style_weight=engine_bench.SEED_STYLE_WEIGHT, device=device
                )
            finally:
                torch.backends.cuda.matmul.fp32_precision = saved
            if objective <= target:
                reached.update(step=progress.step, objective=objective, image=progress.preview)
                from nst_core.progress import StopTransfer

                raise StopTransfer

    engine.stylize(content, [style], params.model_copy(update={"preview_every": 1}), callback=score)
    stamps: list[float] = []
    started = time.perf_counter()
    warm = engine.stylize(content, [style], params, callback=lambda p: stamps.append(time.perf_counter()))
    warm_total = time.perf_counter() - started
    if reached:
        ours_s = stamps[reached["step"] - 1] - started
        line = (
            f"ours ({engine.precision}): the seed's objective at step {reached['step']}, {ours_s:.2f} s warm = "
            f"{ours_s / seed['time_s']:.3f} of the seed's {seed['time_s']:.2f} s"
        )
    else:
        ours_s = None
        line = f"ours ({engine.precision}): not reached in {args.seed_steps} steps"
    print(line, flush=True)
    if args.picture:
        sheet(
            [seed["image"], reached.get("image") or warm.image],
            [
                f"seed, {args.seed_steps} steps",
                f"ours, step {reached['step']}" if reached else f"ours, {args.seed_steps} steps (not reached)",
            ],
            args.picture,
        )
    print_table(
        ["device", "size", "seed s", "objective", "ours s", "ours step", "ratio", f"ours {args.seed_steps} s"],
        [
            [
                _device_name(device),
                str(size),
                f"{seed['time_s']:.2f}",
                f"{target:.4g}",
                "-" if ours_s is None else f"{ours_s:.2f}",
                str(reached.get("step", "-")),
                "-" if ours_s is None else f"{ours_s / seed['time_s']:.3f}",
                f"{warm_total:.2f}",
            ]
        ],
    )
    return {
        "device": _device_name(device),
        "torch": torch.__version__,
        "size": size,
        "seed_s": seed["time_s"],
        "seed_objective": target,
        "ours_s": ours_s,
        "ours_step": reached.get("step"),
        "ours_objective": reached.get("objective"),
        "ours_full_run_s": warm_total,
        "precision": engine.precision,
        "content": Path(args.content).name,
        "style": Path(args.style).name,
    }


def sheet(images: list, labels: list[str], path: str, height: int = 256) -> None:
    """The pictures side by side at one height, each with its label, as one PNG to look at."""
    from PIL import Image, ImageDraw

    scaled = [image.resize((max(1, round(image.width * height / image.height)), height)) for image in images]
    canvas = Image.new("RGB", (sum(i.width for i in scaled) + 8 * (len(scaled) + 1), height + 28), "white")
    x = 8
    draw = ImageDraw.Draw(canvas)
    for image, label in zip(scaled, labels):
        canvas.paste(image, (x, 24))
        draw.text((x, 6), label, fill="black")
        x += image.width + 8
    canvas.save(path)


# --------------------------------------------------------------------------------------------- service


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _curl(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--max-time", str(int(timeout_s)), *args], capture_output=True, timeout=timeout_s + 10
    )


def bench_service(args: argparse.Namespace) -> dict[str, Any]:
    """`nst up` (embedded Redis, one worker on the device), then jobs one after another by curl: submit,
    follow the event stream to its end, download the PNG; each checked, each timed."""
    import io

    from PIL import Image

    if not shutil.which("curl"):
        raise SystemExit("curl is not on this machine")
    workdir = Path(tempfile.mkdtemp(prefix="nst-gpu-service-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NST_")}
    env.update(
        NST_STORAGE_DIR=str(workdir / "storage"),
        NST_DEVICE=args.device,
        NST_LOG_FORMAT="text",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
    )
    log = open(workdir / "nst-up.log", "wb")
    started = time.perf_counter()
    up = subprocess.Popen(
        [sys.executable, "-m", "nst_cli.main", "up", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    jobs: list[dict[str, Any]] = []
    pictures = []
    try:
        ready = None
        while time.perf_counter() - started < args.start_timeout_s:
            answer = _curl(f"{url}/readyz", timeout_s=5)
            # Ready with no worker too (jobs wait in the queue): the bench waits for its worker.
            if answer.returncode == 0 and b'"ready"' in answer.stdout and json.loads(answer.stdout)["workers"]:
                ready = json.loads(answer.stdout)
                break
            if up.poll() is not None:
                raise SystemExit(f"nst up exited with {up.returncode}")
            time.sleep(0.5)
        if ready is None:
            raise SystemExit(f"nst up not ready after {args.start_timeout_s} s")
        start_s = time.perf_counter() - started
        print(f"nst up ready in {start_s:.1f} s: {json.dumps(ready['engines'])}", flush=True)
        content = ROOT / "examples" / "chelsea.jpg"
        styles = [ROOT / "examples" / "swirls.jpg", ROOT / "examples" / "mosaic.jpg"]
        for i in range(args.jobs):
            form = ["-F", f"content=@{content}", "-F", f"style=@{styles[i % 2]}"]
            for name in ("max_size", "steps"):
                if getattr(args, name):
                    form += ["-F", f"{name}={getattr(args, name)}"]
            t0 = time.perf_counter()
            posted = _curl("-X", "POST", *form, f"{url}/jobs")
            job = json.loads(posted.stdout)
            events = _curl(
                "-N",
                "-H",
                "Accept: text/event-stream",
                f"{url}{job['links']['events']}" if job["links"]["events"].startswith("/") else job["links"]["events"],
            )
            stream = events.stdout.decode()
            t_done = time.perf_counter()
            result = _curl("-o", "-", f"{url}/jobs/{job['id']}/result")
            t1 = time.perf_counter()
            final = json.loads(_curl(f"{url}/jobs/{job['id']}").stdout)
            image = Image.open(io.BytesIO(result.stdout))
            image.load()
            from nst_shared.images import fit_size

            expected = fit_size(*Image.open(content).size, final["params"]["max_size"])
            ok = (
                image.format == "PNG"
                and image.size == expected
                and final["status"] == "succeeded"
                and "event: completed" in stream
            )
            pictures.append(image.convert("RGB"))
            record = {
                "job": i + 1,
                "ok": ok,
                "status": final["status"],
                "size": list(image.size),
                "steps": final["params"]["steps"],
                "submit_to_result_s": t1 - t0,
                "submit_to_completed_event_s": t_done - t0,
                "queue_pickup_s": _seconds(final["started_at"]) - _seconds(final["created_at"]),
                "run_s": _seconds(final["finished_at"]) - _seconds(final["started_at"]),
                "progress_events": stream.count("event: progress"),
                "device": final.get("device"),
                "precision": final.get("precision"),
            }
            jobs.append(record)
            print(json.dumps(record), flush=True)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
        log.close()
        print(
            "--- nst up log (last lines) ---\n"
            + "\n".join((workdir / "nst-up.log").read_text(errors="replace").splitlines()[-15:]),
            flush=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)
    if args.picture and pictures:
        sheet(pictures, [f"job {j['job']} {j['submit_to_result_s']:.2f} s" for j in jobs], args.picture, height=192)
    print_table(
        ["job", "ok", "size", "steps", "submit->PNG s", "->completed s", "pickup s", "run s", "progress ev"],
        [
            [
                str(j["job"]),
                str(j["ok"]),
                "x".join(map(str, j["size"])),
                str(j["steps"]),
                f"{j['submit_to_result_s']:.2f}",
                f"{j['submit_to_completed_event_s']:.2f}",
                f"{j['queue_pickup_s']:.3f}",
                f"{j['run_s']:.2f}",
                str(j["progress_events"]),
            ]
            for j in jobs
        ],
        [f"nst up ready in {start_s:.1f} s; job 1 is cold (new shapes), the others warm"],
    )
    if not all(j["ok"] for j in jobs):
        raise SystemExit("a job did not end as a checked PNG")
    return {"device": args.device, "start_s": start_s, "jobs": jobs}


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------------------------- largest


def bench_largest(args: argparse.Namespace) -> dict[str, Any]:
    """Single-scale sizes in increasing order, two steps each, until one runs out of device memory."""
    import torch

    from nst_core.transfer import StyleTransfer
    from nst_shared.errors import DeviceOutOfMemory

    engine = StyleTransfer(device=args.device, precision=args.precision)
    rows, found = [], []
    result = {
        "device": _device_name(args.device),
        "torch": torch.__version__,
        "precision": engine.precision,
        "sizes": found,
    }
    for size in args.sizes:
        try:
            run = timed_run(engine, size, 2, device=args.device, warmup=1)
        except DeviceOutOfMemory as exc:
            found.append({"size": size, "fits": False, "error": str(exc)[:200]})
            rows.append([str(size), "no", "", ""])
            break
        finally:
            if args.json:  # after every size: a step stopped at its time limit keeps what it found
                Path(args.json).write_text(json.dumps(result, indent=1, default=str))
        found.append({"size": size, "fits": True, **run})
        rows.append([str(size), "yes", f"{run['s_per_iter']:.3f}", f"{run.get('peak_gb', 0):.1f}"])
        print(json.dumps(found[-1]), flush=True)
    print_table(["size", "fits", "s/iter", "peak GB"], rows, [f"precision {engine.precision}, one scale"])
    return result


def bench_graphs(args: argparse.Namespace) -> dict[str, Any]:
    """One L-BFGS step at a fixed shape (the network's forward and backward, the style loss, the update) eager
    against a CUDA graph of it replayed: seconds per step and the loss each reaches after the same steps. The
    step reads nothing back (nst_core/lbfgs.py), so the whole of it can be captured; if the graph wins, the
    engine can replay it for a scale's steps."""
    import torch

    from nst_core.lbfgs import LBFGS
    from nst_core.losses import gram_matrix
    from nst_core.tensors import image_to_tensor
    from nst_core.transfer import StyleTransfer

    device, size, steps = args.device, args.size, args.iterations
    engine = StyleTransfer(device=device, precision=args.precision)
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    with torch.no_grad():
        style = engine.net(image_to_tensor(picture(size, 1), engine.device), layers)
        targets = {n: gram_matrix(style[n]) for n in layers}
    start = image_to_tensor(picture(size, 0), engine.device)

    def run(graphed: bool) -> dict[str, Any]:
        image = start.clone().contiguous().requires_grad_(True)
        optimizer = LBFGS(image, history_size=20)

        def closure() -> torch.Tensor:
            feats = engine.net(image, layers)
            loss = sum(((gram_matrix(feats[n]) - targets[n]) ** 2).sum() for n in layers) * 1e3
            loss.backward()
            return loss

        warmup = 5
        side = torch.cuda.Stream() if graphed else None
        with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
            for _ in range(warmup):
                optimizer.step(closure)
        synchronize(device)
        graph = None
        if graphed:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                optimizer.step(closure)
        synchronize(device)
        started = time.perf_counter()
        for _ in range(steps):
            graph.replay() if graph is not None else optimizer.step(closure)
        synchronize(device)
        elapsed = time.perf_counter() - started
        return {"s_per_step": elapsed / steps, "loss": optimizer.loss, "pairs": optimizer.pairs}

    found: dict[str, Any] = {"size": size, "precision": engine.precision, "steps": steps}
    found["eager"] = run(False)
    try:
        if not device.startswith("cuda"):
            raise RuntimeError("CUDA graphs need a CUDA device")
        found["graph"] = run(True)
    except Exception as exc:  # what failed to capture is the finding
        found["graph"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    graph = found["graph"]
    rows = [["eager", f"{found['eager']['s_per_step'] * 1e3:.2f}", f"{found['eager']['loss']:.4g}", ""]]
    if "error" in graph:
        rows.append(["graph", "failed", "", graph["error"][:80]])
    else:
        speedup = found["eager"]["s_per_step"] / graph["s_per_step"]
        found["speedup"] = speedup
        rows.append(["graph", f"{graph['s_per_step'] * 1e3:.2f}", f"{graph['loss']:.4g}", f"{speedup:.2f}x"])
    print_table(["step", "ms/step", "loss after", "speedup"], rows, [f"{size} px {engine.precision}, {steps} steps"])
    return found


# ----------------------------------------------------------------------------------------------- main

COMMANDS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "engine": bench_engine,
    "objective": bench_objective,
    "service": bench_service,
    "largest": bench_largest,
    "graphs": bench_graphs,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--picture", help="engine/objective/service: write the pictures here (PNG)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--iterations", type=int, default=20, help="engine: measured steps at the first size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--count-steps", type=int, default=3, help="engine: steps counted for syncs and launches")
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], help="engine: the rows' formats")
    parser.add_argument("--matmul-n", type=int, default=8192)
    parser.add_argument("--skip-cudnn", action="store_true", help="engine: no cudnn.benchmark on/off runs")
    parser.add_argument("--size", type=int, default=512, help="objective: output size")
    parser.add_argument("--seed-steps", type=int, default=300)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--content", default=shared_image("content", "tiger.jpg", "chelsea.jpg"))
    parser.add_argument("--style", default=shared_image("style", "starry.jpg", "swirls.jpg"))
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--max-size", type=int, help="service: jobs' max_size (default: the device's)")
    parser.add_argument("--steps", type=int, help="service: jobs' steps (default: the device's)")
    parser.add_argument("--start-timeout-s", type=float, default=120)
    args = parser.parse_args(argv)
    result = COMMANDS[args.command](args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
