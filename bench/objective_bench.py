"""Time to the seed's objective: the seed's algorithm (single scale, 300 L-BFGS steps, style weight 300 on the
bundled network's scale) against our multi-scale schedule, both judged by the seed's objective of the final
image at full size, on the same inputs and network. Uses shared images passed on the command line:

    .venv/bin/python bench/objective_bench.py CONTENT STYLE [--size 512] [--seed-steps 300] [--ours 60 100 150]

The style is centre-cropped to the content's aspect first, so the seed's stretched style and our
aspect-keeping style are the same picture and both runs minimise the same objective.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quality import judge_model, quality_ratios
from nst_core.losses import gram_matrix
from nst_core.tensors import image_to_tensor
from nst_core.transfer import StyleTransfer
from nst_shared.images import fit_size, load_image, resize
from nst_shared.params import TransferParams

STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def crop_to_aspect(image: Image.Image, aspect: float) -> Image.Image:
    w, h = image.size
    if w / h > aspect:
        new_w = round(h * aspect)
        return image.crop(((w - new_w) // 2, 0, (w - new_w) // 2 + new_w, h))
    new_h = round(w / aspect)
    return image.crop((0, (h - new_h) // 2, w, (h - new_h) // 2 + new_h))


@torch.no_grad()
def seed_objective(
    image: Image.Image, content: Image.Image, style: Image.Image, *, style_weight: float, device: str = "cpu"
) -> float:
    """content MSE at relu4_2 + style_weight * mean over the five layers of Gram MSE, at the image's size, on
    the float32 network (on `device`: a GPU scores in milliseconds what takes the CPU a second)."""
    size = image.size
    model = judge_model(device)
    out = model(image_to_tensor(image, device), [*STYLE, "relu4_2"])
    c = model(image_to_tensor(resize(content, size), device), ["relu4_2"])
    s = model(image_to_tensor(resize(style, size), device), STYLE)
    style_loss = sum(torch.mean((gram_matrix(out[n]) - gram_matrix(s[n])) ** 2) for n in STYLE) / len(STYLE)
    return float(torch.mean((out["relu4_2"] - c["relu4_2"]) ** 2) + style_weight * style_loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("content")
    parser.add_argument("style")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--style-weight", type=float, default=300.0)
    parser.add_argument("--seed-steps", type=int, default=300)
    parser.add_argument("--ours", type=int, nargs="+", default=[60, 100, 150])
    parser.add_argument("--save", type=Path, default=None, help="folder to write the pictures to")
    args = parser.parse_args()

    engine = StyleTransfer(device="cpu")
    content = load_image(args.content)
    style = crop_to_aspect(load_image(args.style), content.width / content.height)
    size = fit_size(*content.size, args.size)

    def run(params: TransferParams, name: str) -> tuple[float, float, Image.Image]:
        started = time.perf_counter()
        image = engine.stylize(content, [style], params).image
        elapsed = time.perf_counter() - started
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            image.save(args.save / f"{name}.png")
        return elapsed, seed_objective(image, content, style, style_weight=args.style_weight), image

    # Equal layer weights: the seed's objective (our default balances the layers differently).
    base = TransferParams(max_size=args.size, style_weight=args.style_weight, style_layer_weights=None)
    start_j = seed_objective(resize(content, size), content, style, style_weight=args.style_weight)
    seed_s, seed_j, seed_img = run(base.replace(scales=1, steps=args.seed_steps), "seed")
    print(
        f"size {size[0]}x{size[1]}, style weight {args.style_weight:g}; objective of the content image: {start_j:.4g}",
        flush=True,
    )
    print(f"{'run':>28} {'time s':>8} {'objective':>11} {'vs seed':>8} {'time ratio':>10} {'style/content ratio':>20}")
    sr, cr = quality_ratios(seed_img, content, style)
    print(
        f"{'seed: 1 scale, ' + str(args.seed_steps) + ' steps':>28} {seed_s:>8.1f} {seed_j:>11.4g} {1:>8.3f} "
        f"{1:>10.2f} {sr:>10.3f} / {cr:.3f}",
        flush=True,
    )
    for steps in args.ours:
        for tolerance in (0.0,):
            params = base.replace(steps=steps, early_stop_tolerance=tolerance)
            s, j, img = run(params, f"ours-{steps}")
            sr, cr = quality_ratios(img, content, style)
            print(
                f"{'ours: 3 scales, ' + str(steps) + ' steps':>28} {s:>8.1f} {j:>11.4g} {j / seed_j:>8.3f} "
                f"{s / seed_s:>10.2f} {sr:>10.3f} / {cr:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
