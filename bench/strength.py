"""Does a look mean the same strength on every painting: each look on two photos and eight styles, scored by
quality.py; spreads, orders, times, a contact sheet per photo. Pictures in --out/LABEL are kept (resumed, rescored).

    .venv/bin/python bench/strength.py --out /tmp/strength [--label after] [--size 256] [--score-only]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from common import ROOT, shared_image, sheet
from PIL import Image

from bench.quality import paintedness, quality_ratios
from nst_core.transfer import StyleTransfer
from nst_shared.images import load_image
from nst_shared.looks import LOOK_NAMES
from nst_shared.params import TransferParams

PHOTOS = {"tiger": shared_image("content", "tiger"), "chelsea": ROOT / "examples" / "chelsea.jpg"}
STYLES = {name: shared_image("style", name) for name in ("starry", "shipwreck")}
STYLES |= {"composition": shared_image("style", "compositionvii")}
STYLES |= {name: ROOT / "examples" / f"{name}.jpg" for name in ("swirls", "mosaic")}
STYLE_NAMES = ("starry", "shipwreck", "swirls", "stripes", "mosaic", "composition", "poster", "fine")
PALETTE = [[230, 57, 70], [241, 250, 238], [69, 123, 157], [29, 53, 87], [255, 183, 3], [42, 157, 143]]
MEASURES = ("content", "style", "painted")


def style_image(name: str, px: int = 512) -> Image.Image:
    """A painting, or one the bench draws (seeded): a flat-colour poster, a fine texture, a high-contrast stripe."""
    if name in STYLES:
        return load_image(STYLES[name])
    rng, (y, x) = np.random.default_rng(7), np.mgrid[0:px, 0:px].astype(np.float32)
    if name == "poster":  # Voronoi cells in six flat colours with dark borders: large shapes, no texture
        palette, seeds = np.array(PALETTE), rng.uniform(0, px, (24, 2))
        dist = np.sqrt((x[..., None] - seeds[:, 0]) ** 2 + (y[..., None] - seeds[:, 1]) ** 2)
        order, cells = np.sort(dist, axis=-1), palette[np.argmin(dist, axis=-1) % len(palette)]
        cells[(order[..., 1] - order[..., 0]) < 4] = (20, 20, 20)
    elif name == "fine":  # short random strokes a few pixels long in earthy tones: texture without shapes
        strokes = np.apply_along_axis(lambda r: np.convolve(r, [0.2] * 5, "same"), 1, rng.normal(0, 1, (px, px, 3)))
        cells = np.array([150, 120, 80]) + 60 * strokes * np.array([1.0, 0.8, 0.6])
    else:  # stripes
        cells = (np.sin((x + 0.6 * y) / 5.0) > 0)[..., None] * np.array([240, 240, 230]) + 10
    return Image.fromarray(cells.clip(0, 255).astype(np.uint8))


def pictures():
    """(key, photo, style) of every picture, photo by photo, style by style, look by look."""
    for (photo, path), style_name in itertools.product(PHOTOS.items(), STYLE_NAMES):
        content, style = load_image(path), style_image(style_name)
        for look in LOOK_NAMES:
            yield f"{photo}-{style_name}-{look}", look, content, style


def kept(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def painted(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB") if path.exists() else Image.new("RGB", (64, 64), "white")


def paint_and_score(out: Path, score_only: bool, size: int, steps: int) -> tuple[dict, dict]:
    """Each picture not yet in `out` painted (unless score_only), each not yet scored scored; both kept as JSON."""
    times, scores, engine = kept(out / "times.json"), kept(out / "scores.json"), StyleTransfer(device="cpu")
    engine.stylize(load_image(PHOTOS["tiger"]), [style_image("fine")], TransferParams(max_size=96, steps=2))  # warm
    for key, look, content, style in pictures():
        if not (path := out / f"{key}.png").exists() and not score_only:
            started = time.perf_counter()
            params = TransferParams(look=look, max_size=size, steps=steps, seed=0, min_scale_size=min(192, size))
            engine.stylize(content, [style], params).image.save(path)
            times[key] = time.perf_counter() - started
            (out / "times.json").write_text(json.dumps(times, indent=1))
            print(f"{key}: {times[key]:.1f} s", flush=True)
        if key not in scores and path.exists():
            style_ratio, content_ratio = quality_ratios(output := painted(path), content, style)
            scores[key] = [content_ratio, style_ratio, paintedness(output, content)]
    (out / "scores.json").write_text(json.dumps(scores, indent=1))
    return scores, times


def spread(values: list[float]) -> str:
    return f"{max(values) / min(values):.2f}x" if values else "-"


def report(scores: dict[str, list[float]], times: dict[str, float]) -> None:
    """Per photo and look, each style's ratios, then the spread across styles and the looks' order."""
    for photo in PHOTOS:
        print(f"\n{photo}: content ratio / style ratio / paintedness per look (lower ratios: more of each)")
        print(f"{'style':<12}" + "".join(f"{look:>22}" for look in LOOK_NAMES) + "  order, paintedness over the looks")
        for style_name in STYLE_NAMES:
            found = [scores.get(f"{photo}-{style_name}-{look}") for look in LOOK_NAMES]
            cells = ["-" if f is None else "{:.3f}/{:.3f}/{:.2f}".format(*f) for f in found]
            ordered = all(a < b for a, b in itertools.pairwise(f[0] if f else float("nan") for f in found))
            reach = spread([f[2] for f in found if f])  # how far the weight alone moves paintedness (bench/README.md)
            print(f"{style_name:<12}" + "".join(f"{c:>22}" for c in cells) + f"  {'ok' if ordered else 'NOT'} {reach}")
        for index, measure in enumerate(MEASURES):
            keys = [[f"{photo}-{s}-{look}" for s in STYLE_NAMES] for look in LOOK_NAMES]
            cells = [spread([scores[k][index] for k in look_keys if k in scores]) for look_keys in keys]
            print(f"{'spread ' + measure:<12}" + "".join(f"{c:>22}" for c in cells))
    for index, measure in enumerate(MEASURES):
        cells = [f"{look} {spread([v[index] for k, v in scores.items() if k.endswith(look)])}" for look in LOOK_NAMES]
        print(f"spread of {measure} over both photos and all styles: " + ", ".join(cells))
    by_look = {look: [t for k, t in times.items() if k.endswith(f"-{look}")] for look in LOOK_NAMES}
    print("mean job time: " + ", ".join(f"{k} {sum(v) / len(v):.1f} s" for k, v in by_look.items() if v))


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--out", type=Path, required=True)
    options.add_argument("--label", default="after", help="subfolder of --out: one per engine version")
    options.add_argument("--size", type=int, default=256)
    options.add_argument("--steps", type=int, default=120)
    options.add_argument("--score-only", action="store_true")
    args = options.parse_args()
    (out := args.out / args.label).mkdir(parents=True, exist_ok=True)
    scores, times = paint_and_score(out, args.score_only, args.size, args.steps)
    for photo in PHOTOS:
        rows = [[style_image(s), *(painted(out / f"{photo}-{s}-{k}.png") for k in LOOK_NAMES)] for s in STYLE_NAMES]
        sheet(rows, out / f"sheet-{photo}.png", height=156)
        print(f"contact sheet: {out / f'sheet-{photo}.png'} (a row per style: the style, then {', '.join(LOOK_NAMES)})")
    report(scores, times)


if __name__ == "__main__":
    main()
