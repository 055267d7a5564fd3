"""Engine speed on this machine: seconds per warm L-BFGS iteration, GFLOP/s against the same run's fp32 (and
bf16) matmul peak, peak RSS, and the ratio against a straightforward baseline, at 256 and 512 px; ours in float32
and in the precision the engine picks here ('auto': bf16 where the CPU multiplies it much faster).

Then the time to the seed's objective: the seed's algorithm as the seed ran it (the plain implementation, 300
L-BFGS iterations at 512 px, style weight 300, equal layer weights) on tiger + The Starry Night, and our engine
on the same objective, single scale and coarse to fine, stopped as soon as its full-size image, scored on the
float32 network, reaches the seed's final objective (the scoring time is not counted). Each configuration runs
in a subprocess of its own so peak RSS is its own. Usage:
    .venv/bin/python bench/engine_bench.py [--sizes 256 512] [--iterations 6] [--objective-size 512]
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


def matmul_gflops(dtype: str = "fp32", n: int = 4096, repeats: int = 3) -> float:
    """The best matmul rate of this run in `dtype`: torch.mm (MKL, which takes a slower path on AMD processors)
    or the same product as a 1x1 convolution through oneDNN (AVX-512 or AMX here), whichever is faster."""
    import torch
    from torch.nn import functional as F

    from nst_core.precision import DTYPES

    def rate(fn, flop: float) -> float:
        fn()
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        return flop * repeats / (time.perf_counter() - started) / 1e9

    kind = DTYPES[dtype]
    a, b = torch.rand(n, n, dtype=kind), torch.rand(n, n, dtype=kind)
    x = torch.rand(1, n // 2, 64, 64, dtype=kind).contiguous(memory_format=torch.channels_last)
    w = torch.rand(n // 2, n // 2, 1, 1, dtype=kind).contiguous(memory_format=torch.channels_last)
    return max(rate(lambda: a @ b, 2 * n**3), rate(lambda: F.conv2d(x, w), 2 * (n // 2) ** 2 * 64 * 64))


def picture(size: int, seed: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def ours(size: int, iterations: int, precision: str) -> dict:
    """The engine as a worker runs it: built once, one transfer, time per iteration after warm-up."""
    from torch.utils.flop_counter import FlopCounterMode

    from nst_core.transfer import StyleTransfer
    from nst_shared.params import TransferParams

    engine = StyleTransfer(device="cpu", precision=precision)
    stamps: list[float] = []
    params = TransferParams(max_size=size, steps=iterations + 2, scales=1)
    engine.stylize(picture(size, 0), [picture(size, 1)], params, callback=lambda p: stamps.append(time.perf_counter()))
    per_iteration = (stamps[-1] - stamps[1]) / (len(stamps) - 2)
    # FLOPs of one iteration: the forward to relu5_1, the Grams, and the backward to the image.
    import torch

    from nst_core.losses import gram_matrix

    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
    x = torch.rand(1, 3, size, size, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        feats = engine.model(x.contiguous(memory_format=torch.channels_last), layers)
        loss = sum(gram_matrix(feats[n]).sum() for n in layers if n != "relu4_2") + feats["relu4_2"].sum()
        loss.backward()
    return {"s_per_iter": per_iteration, "flops_per_iter": counter.get_total_flops(), "precision": engine.precision}


def baseline(size: int, iterations: int, pictures: tuple | None = None, device: str = "cpu") -> dict:
    """A plain implementation: torchvision's vgg19() built per run (classifier included), the same Caffe
    weights loaded into it, contiguous tensors, autograd Grams, the seed's L-BFGS loop of 20 inner iterations
    per step; time per closure call. With `pictures` (content, style at the output size) it is the seed's
    whole run, and its final picture is kept."""
    import torch
    import torchvision

    from nst_core.features import CONV_NAMES

    model = torchvision.models.vgg19(weights=None)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    for conv, name in zip(convs, CONV_NAMES):
        weight, bias = _WEIGHTS[name]
        conv.weight.data.copy_(weight)
        conv.bias.data.copy_(bias)
    features = model.features.eval().to(device)
    for p in features.parameters():
        p.requires_grad_(False)
    style_idx, content_idx = [1, 6, 11, 20, 29], 22  # relu1_1 ... relu5_1, relu4_2 in torchvision's order
    mean = torch.tensor([103.939, 116.779, 123.68], device=device).view(1, 3, 1, 1)

    def prep(img):
        x = torch.from_numpy(__import__("numpy").asarray(img, dtype="float32")).permute(2, 0, 1)[None]
        return x.to(device).flip(1) - mean

    def feats(x):
        out = {}
        for i, layer in enumerate(features[:30]):
            x = layer(x)
            out[i] = x
        return out

    def gram(f):
        _, c, h, w = f.shape
        m = f.view(c, h * w)
        return m @ m.t() / (c * h * w)

    content_img, style_img = pictures or (picture(size, 0), picture(size, 1))
    started = time.perf_counter()
    with torch.no_grad():
        cf = feats(prep(content_img))
        sf = feats(prep(style_img))
        content_t = cf[content_idx]
        style_t = [gram(sf[i]) for i in style_idx]
    image = prep(content_img).contiguous().requires_grad_(True)
    optimizer = torch.optim.LBFGS([image], max_iter=min(20, iterations + 2))  # fewer only in dry runs
    stamps: list[float] = []

    def closure():
        optimizer.zero_grad()
        f = feats(image)
        loss = torch.nn.functional.mse_loss(f[content_idx], content_t)
        loss = loss + 300 * sum(torch.nn.functional.mse_loss(gram(f[i]), t) for i, t in zip(style_idx, style_t)) / 5
        loss.backward()
        stamps.append(time.perf_counter())
        return loss

    while len(stamps) < iterations + 2:
        optimizer.step(closure)
    result = {"s_per_iter": (stamps[iterations + 1] - stamps[1]) / iterations, "time_s": stamps[-1] - started}
    if pictures:
        with torch.no_grad():  # back to RGB 0..1, as the seed saved it
            rgb = ((image + mean).flip(1) / 255).clamp(0, 1).cpu()
        result["image"] = rgb
    return result


_WEIGHTS: dict = {}

SEED_STEPS = 300
SEED_STYLE_WEIGHT = 300.0


def objective_pictures(size: int, content_path: str, style_path: str):
    """The content at `size` and the style centre-cropped to its aspect, at the same size (the seed stretched
    its style over the frame; cropping first makes that the same picture as our aspect-keeping style)."""
    from bench.objective_bench import crop_to_aspect
    from nst_shared.images import fit_size, load_image, resize

    content = load_image(content_path)
    style = crop_to_aspect(load_image(style_path), content.width / content.height)
    frame = fit_size(*content.size, size)
    return content, style, resize(content, frame), resize(style, frame)


def seed_run(size: int, content_path: str, style_path: str, *, device: str = "cpu", steps: int = SEED_STEPS) -> dict:
    """The seed's algorithm as the seed ran it (the plain implementation, 300 L-BFGS iterations, style weight
    300, equal layer weights): its time, its final picture and that picture's objective."""
    from bench.objective_bench import seed_objective
    from nst_core.tensors import tensor_to_image

    content, style, content_px, style_px = objective_pictures(size, content_path, style_path)
    run = baseline(size, steps - 2, (content_px, style_px), device=device)
    image = tensor_to_image(run["image"])
    objective = seed_objective(image, content, style, style_weight=SEED_STYLE_WEIGHT, device=device)
    return {"time_s": run["time_s"], "objective": objective, "image": image}


def ours_run(size: int, content_path: str, style_path: str, target: float, scales: int, precision: str) -> dict:
    """Our engine on the seed's objective (equal layer weights, style weight 300): the time at which the full-size
    image first scores `target` or better on the float32 network (the run stops there), else the whole run's time
    and its final objective. The engine's own loss (bf16 features, maybe) only says when to start scoring."""
    from bench.objective_bench import seed_objective
    from nst_core.progress import StopTransfer
    from nst_core.transfer import StyleTransfer
    from nst_shared.params import TransferParams

    content, style, _, _ = objective_pictures(size, content_path, style_path)
    engine = StyleTransfer(device="cpu", precision=precision)
    params = TransferParams(
        max_size=size,
        steps=SEED_STEPS,
        scales=scales,
        style_weight=SEED_STYLE_WEIGHT,
        style_layer_weights=None,
        preview_every=1,
    )
    curve: list[tuple[float, float]] = []  # (elapsed s, engine loss) at the full size
    scoring = 0.0  # seconds spent scoring, taken out of the times
    objective = float("inf")

    def watch(progress) -> None:
        nonlocal scoring, objective
        if progress.scale != progress.scales:
            return
        curve.append((progress.elapsed_s - scoring, progress.total_loss))
        if progress.total_loss <= target * 1.05:
            started = time.perf_counter()
            objective = seed_objective(progress.preview, content, style, style_weight=SEED_STYLE_WEIGHT)
            scoring += time.perf_counter() - started
            if objective <= target:
                raise StopTransfer

    started = time.perf_counter()
    result = engine.stylize(content, [style], params, callback=watch)
    elapsed = time.perf_counter() - started - scoring
    if objective > target:
        objective = seed_objective(result.image, content, style, style_weight=SEED_STYLE_WEIGHT)
    return {
        "time_s": elapsed,
        "objective": objective,
        "reached": objective <= target,
        "curve": curve,
        "precision": engine.precision,
    }


def run_one(kind: str, size: int, iterations: int, extra: list[str]) -> dict:
    import torch

    global _WEIGHTS
    if kind in ("baseline", "seed"):
        from nst_core.features import load_caffe_weights

        _WEIGHTS = load_caffe_weights()
    if kind == "seed":
        result = seed_run(size, *extra)
        result.pop("image")
    elif kind.startswith("ours-"):  # ours-<scales>-<precision>
        _, scales, precision = kind.split("-")
        result = ours_run(size, extra[0], extra[1], float(extra[2]), scales=int(scales), precision=precision)
    elif kind.startswith("ours"):  # ours:<precision>
        result = ours(size, iterations, kind.partition(":")[2])
    else:
        result = baseline(size, iterations)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["threads"] = torch.get_num_threads()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument(
        "--objective-size",
        type=int,
        default=512,
        help="size of the time-to-objective runs (0: skip them; they take ~20 min at 512)",
    )
    parser.add_argument("--content", default=str(SHARED / "content" / "tiger.jpg"))
    parser.add_argument("--style", default=str(SHARED / "style" / "starry.jpg"))
    parser.add_argument("--one", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.iterations, args.one[2:])))
        return

    from nst_shared.allocator import ENGINE_MALLOC_ENV, with_engine_malloc

    plain_env = {k: v for k, v in os.environ.items() if k not in ENGINE_MALLOC_ENV}

    def child(kind: str, size: int, *extra: object) -> dict:
        # Ours runs with the malloc settings a worker and `nst run` start with; the baseline with glibc's own.
        env = with_engine_malloc(plain_env) if kind.startswith("ours") else plain_env
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--iterations",
                str(args.iterations),
                "--one",
                kind,
                str(size),
                *map(str, extra),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    peaks = {"fp32": matmul_gflops("fp32"), "bf16": matmul_gflops("bf16")}
    print(
        f"matmul peak (this run, best of torch.mm and a oneDNN 1x1 convolution): fp32 {peaks['fp32']:.0f}, "
        f"bf16 {peaks['bf16']:.0f} GFLOP/s",
        flush=True,
    )
    rows = []
    for size in args.sizes:
        base, mine = child("baseline", size), {p: child(f"ours:{p}", size) for p in ("fp32", "auto")}
        gflop = mine["fp32"]["flops_per_iter"] / 1e9
        runs = [("baseline", "fp32", base), ("ours", "fp32", mine["fp32"])]
        if mine["auto"]["precision"] != "fp32":  # 'auto' picked bf16 here
            runs.append(("ours", mine["auto"]["precision"], mine["auto"]))
        for name, precision, r in runs:
            rate = gflop / r["s_per_iter"]
            rows.append(
                [
                    f"{size}",
                    f"{name} {precision}",
                    f"{r['s_per_iter']:.3f}",
                    f"{gflop:.0f}",
                    f"{rate:.0f}",
                    f"{100 * rate / peaks['fp32']:.0f}%",
                    f"{100 * rate / peaks[precision]:.0f}%",
                    f"{r['peak_rss_mb']:.0f}",
                    f"{base['s_per_iter'] / r['s_per_iter']:.2f}x",
                    "",
                ]
            )
    if args.objective_size:
        size = args.objective_size
        seed = child("seed", size, args.content, args.style)
        rows.append(
            [
                f"{size}",
                "seed fp32",
                "",
                "",
                "",
                "",
                "",
                f"{seed['peak_rss_mb']:.0f}",
                "",
                f"{seed['time_s']:.0f} s (objective {seed['objective']:.4g})",
            ]
        )
        for scales, precision in ((1, "fp32"), (1, "auto"), (3, "auto")):
            r = child(f"ours-{scales}-{precision}", size, args.content, args.style, seed["objective"])
            # The engine's loss at a quarter of the seed's time, from the full-size part of the run.
            quarter = [loss for t, loss in r["curve"] if t <= seed["time_s"] / 4]
            at_quarter = f", at 1/4 of its time {quarter[-1] / seed['objective']:.2f}x" if quarter else ""
            reached = (
                f"{r['time_s']:.0f} s = {r['time_s'] / seed['time_s']:.2f} of the seed's"
                if r["reached"]
                else f"not in {SEED_STEPS} steps ({r['objective'] / seed['objective']:.2f}x)"
            )
            rows.append(
                [
                    f"{size}",
                    f"ours x{scales} {r['precision']}",
                    "",
                    "",
                    "",
                    "",
                    "",
                    f"{r['peak_rss_mb']:.0f}",
                    "",
                    reached + at_quarter,
                ]
            )
    header = [
        "size",
        "impl",
        "s/iter",
        "GFLOP/iter",
        "GFLOP/s",
        "% fp32 peak",
        "% own peak",
        "peak RSS MB",
        "speed-up",
        f"time to the seed's {SEED_STEPS}-step objective",
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in [header, *rows]:
        print(
            "  ".join(cell.rjust(w) if i < len(header) - 1 else cell for i, (cell, w) in enumerate(zip(line, widths)))
        )
    print(
        f"(matmul peak again after the runs: fp32 {matmul_gflops('fp32'):.0f}, bf16 {matmul_gflops('bf16'):.0f} "
        "GFLOP/s; '% own peak' is against the peak of the row's precision)"
    )


if __name__ == "__main__":
    main()
