"""Engine speed on this machine: seconds per warm L-BFGS iteration, GFLOP/s against the same run's fp32
matmul peak, peak RSS, and the ratio against a straightforward baseline, at 256 and 512 px.

Each configuration runs in a subprocess of its own so peak RSS is its own. Usage:
    .venv/bin/python bench/engine_bench.py [--sizes 256 512] [--iterations 6]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def matmul_gflops(n: int = 4096, repeats: int = 3) -> float:
    import torch

    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9


def picture(size: int, seed: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def ours(size: int, iterations: int) -> dict:
    """The engine as a worker runs it: built once, one transfer, time per iteration after warm-up."""
    from torch.utils.flop_counter import FlopCounterMode

    from nst_core.transfer import StyleTransfer
    from nst_shared.params import TransferParams

    engine = StyleTransfer(device="cpu")
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
    return {"s_per_iter": per_iteration, "flops_per_iter": counter.get_total_flops()}


def baseline(size: int, iterations: int) -> dict:
    """A plain implementation: torchvision's vgg19() built per run (classifier included), the same Caffe
    weights loaded into it, contiguous tensors, autograd Grams, the seed's L-BFGS loop of 20 inner iterations
    per step; time per closure call."""
    import torch
    import torchvision

    from nst_core.features import CONV_NAMES

    model = torchvision.models.vgg19(weights=None)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    for conv, name in zip(convs, CONV_NAMES):
        weight, bias = _WEIGHTS[name]
        conv.weight.data.copy_(weight)
        conv.bias.data.copy_(bias)
    features = model.features.eval()
    for p in features.parameters():
        p.requires_grad_(False)
    style_idx, content_idx = [1, 6, 11, 20, 29], 22  # relu1_1 ... relu5_1, relu4_2 in torchvision's order
    mean = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)

    def prep(img):
        x = torch.from_numpy(__import__("numpy").asarray(img, dtype="float32")).permute(2, 0, 1)[None]
        return x.flip(1) - mean

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

    with torch.no_grad():
        cf = feats(prep(picture(size, 0)))
        sf = feats(prep(picture(size, 1)))
        content_t = cf[content_idx]
        style_t = [gram(sf[i]) for i in style_idx]
    image = prep(picture(size, 0)).contiguous().requires_grad_(True)
    optimizer = torch.optim.LBFGS([image], max_iter=20)
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
    return {"s_per_iter": (stamps[iterations + 1] - stamps[1]) / iterations}


_WEIGHTS: dict = {}


def run_one(kind: str, size: int, iterations: int) -> dict:
    import torch

    global _WEIGHTS
    if kind == "baseline":
        from nst_core.features import load_caffe_weights

        _WEIGHTS = load_caffe_weights()
    result = {"ours": ours, "baseline": baseline}[kind](size, iterations)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["threads"] = torch.get_num_threads()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--one", nargs=2, metavar=("KIND", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.iterations)))
        return

    def child(kind: str, size: int) -> dict:
        out = subprocess.run([sys.executable, __file__, "--one", kind, str(size), "--iterations",
                              str(args.iterations)], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    peak = matmul_gflops()
    print(f"fp32 matmul peak (4096^3, this run): {peak:.0f} GFLOP/s")
    print(f"{'size':>5} {'impl':>9} {'s/iter':>7} {'GFLOP/iter':>10} {'GFLOP/s':>8} {'% peak':>7} "
          f"{'peak RSS MB':>11} {'speed-up':>8}")
    for size in args.sizes:
        mine, base = child("ours", size), child("baseline", size)
        gflop = mine["flops_per_iter"] / 1e9
        for name, r in (("baseline", base), ("ours", mine)):
            rate = gflop / r["s_per_iter"]
            ratio = base["s_per_iter"] / r["s_per_iter"]
            print(f"{size:>5} {name:>9} {r['s_per_iter']:>7.3f} {gflop:>10.0f} {rate:>8.0f} {100 * rate / peak:>6.0f}% "
                  f"{r['peak_rss_mb']:>11.0f} {ratio:>7.2f}x")
    print(f"(matmul peak again after the runs: {matmul_gflops():.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
