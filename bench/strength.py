"""Does a look mean the same strength on every painting? Each look at one size on two photos and eight styles of
different character, scored by bench/quality.py (content ratio, style ratio, paintedness), with the spread of
each look across styles, the order of the looks on each pair, the time of each job, and a contact sheet per
photo to look at. Writes into --out (never into the project: the shared pictures are not ours).

    .venv/bin/python bench/strength.py --out /tmp/strength [--label after] [--size 256] [--score-only]

Pictures already in --out/LABEL are kept (a run can be resumed; --score-only paints nothing), so a table of an
earlier engine can be scored again with a newer measure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality import paintedness, quality_ratios  # noqa: E402
from nst_shared.images import load_image  # noqa: E402
from nst_shared.looks import LOOK_NAMES  # noqa: E402

SHARED = Path("/work/shared/images")
PHOTOS = {"tiger": SHARED / "content" / "tiger.jpg", "chelsea": ROOT / "examples" / "chelsea.jpg"}
FILES = {
    "starry": SHARED / "style" / "starry.jpg",
    "shipwreck": SHARED / "style" / "shipwreck.jpg",
    "composition": SHARED / "style" / "compositionvii.jpg",
    "swirls": ROOT / "examples" / "swirls.jpg",
    "mosaic": ROOT / "examples" / "mosaic.jpg",
}
MADE = ("poster", "fine", "stripes")
STYLE_NAMES = ("starry", "shipwreck", "swirls", "stripes", "mosaic", "composition", "poster", "fine")


def made_style(name: str, px: int = 512) -> Image.Image:
    """Styles the bench draws itself, seeded: a flat-colour poster, a fine texture, a high-contrast stripe pattern."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:px, 0:px].astype(np.float32)
    if name == "poster":
        # Voronoi cells in six flat colours with dark borders: large shapes, no texture.
        palette = np.array(
            [[230, 57, 70], [241, 250, 238], [69, 123, 157], [29, 53, 87], [255, 183, 3], [42, 157, 143]]
        )
        seeds = rng.uniform(0, px, (24, 2))
        dist = np.sqrt((x[..., None] - seeds[:, 0]) ** 2 + (y[..., None] - seeds[:, 1]) ** 2)
        order = np.sort(dist, axis=-1)
        cells = palette[np.argmin(dist, axis=-1) % len(palette)]
        cells[(order[..., 1] - order[..., 0]) < 4] = (20, 20, 20)
        return Image.fromarray(cells.astype(np.uint8))
    if name == "fine":
        # Short random strokes a few pixels long in earthy tones: texture without shapes.
        base = rng.normal(0, 1, (px, px, 3))
        kernel = np.ones(5) / 5
        base = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, base)
        tones = np.array([150, 120, 80]) + 60 * base * np.array([1.0, 0.8, 0.6])
        return Image.fromarray(tones.clip(0, 255).astype(np.uint8))
    if name == "stripes":
        stripes = (np.sin((x + 0.6 * y) / 5.0) > 0)[..., None] * np.array([240, 240, 230]) + 10
        return Image.fromarray(stripes.clip(0, 255).astype(np.uint8))
    raise ValueError(name)


def style_image(name: str) -> Image.Image:
    return load_image(FILES[name]) if name in FILES else made_style(name)


def paint(out: Path, size: int, steps: int) -> dict[str, float]:
    """Each (photo, style, look) not yet in `out`, with its job time; returns the times (also kept in out)."""
    from nst_core.transfer import StyleTransfer
    from nst_shared.params import TransferParams

    times_file = out / "times.json"
    times: dict[str, float] = json.loads(times_file.read_text()) if times_file.exists() else {}
    engine = StyleTransfer(device="cpu")
    engine.stylize(load_image(PHOTOS["tiger"]), [made_style("fine")], TransferParams(max_size=96, steps=2))  # warm
    for photo, path in PHOTOS.items():
        content = load_image(path)
        for style_name in STYLE_NAMES:
            style = style_image(style_name)
            for look in LOOK_NAMES:
                key = f"{photo}-{style_name}-{look}"
                if (out / f"{key}.png").exists():
                    continue
                started = time.perf_counter()
                params = TransferParams(look=look, max_size=size, steps=steps, seed=0, min_scale_size=min(192, size))
                image = engine.stylize(content, [style], params).image
                times[key] = time.perf_counter() - started
                image.save(out / f"{key}.png")
                times_file.write_text(json.dumps(times, indent=1))
                print(f"{key}: {times[key]:.1f} s", flush=True)
    return times


def score(out: Path) -> dict[str, tuple[float, float, float]]:
    """(content ratio, style ratio, paintedness) of every picture in `out`."""
    scores_file = out / "scores.json"
    scores: dict[str, list[float]] = json.loads(scores_file.read_text()) if scores_file.exists() else {}
    for photo, path in PHOTOS.items():
        content = load_image(path)
        for style_name in STYLE_NAMES:
            style = style_image(style_name)
            for look in LOOK_NAMES:
                key = f"{photo}-{style_name}-{look}"
                picture = out / f"{key}.png"
                if key in scores or not picture.exists():
                    continue
                output = Image.open(picture).convert("RGB")
                style_ratio, content_ratio = quality_ratios(output, content, style)
                scores[key] = [content_ratio, style_ratio, paintedness(output, content)]
    scores_file.write_text(json.dumps(scores, indent=1))
    return {k: (v[0], v[1], v[2]) for k, v in scores.items()}


def sheet(out: Path, photo: str, cell_px: int = 160) -> Path:
    """A contact sheet: a row per style (the style first), a column per look."""
    columns = ("style", *LOOK_NAMES)
    label_px = 14
    board = Image.new("RGB", (cell_px * len(columns), label_px + cell_px * len(STYLE_NAMES)), "white")
    draw = ImageDraw.Draw(board)
    for col, name in enumerate(columns):
        draw.text((col * cell_px + 4, 1), name, fill="black")
    for row, style_name in enumerate(STYLE_NAMES):
        for col, name in enumerate(columns):
            path = out / f"{photo}-{style_name}-{name}.png"
            if name == "style":
                cell = style_image(style_name)
            elif path.exists():
                cell = Image.open(path).convert("RGB")
            else:
                continue
            cell.thumbnail((cell_px - 4, cell_px - 4))
            board.paste(cell, (col * cell_px + 2, label_px + row * cell_px + 2))
    target = out / f"sheet-{photo}.png"
    board.save(target)
    return target


def report(scores: dict[str, tuple[float, float, float]], times: dict[str, float]) -> None:
    """The table: per photo and look, each style's ratios, then the spread across styles and the looks' order."""
    measures = ("content", "style", "painted")
    for photo in PHOTOS:
        print(f"\n{photo}: content ratio / style ratio / paintedness per look (lower ratios: more of each)")
        print(f"{'style':<12}" + "".join(f"{look:>22}" for look in LOOK_NAMES) + "  order")
        for style_name in STYLE_NAMES:
            cells, contents = [], []
            for look in LOOK_NAMES:
                found = scores.get(f"{photo}-{style_name}-{look}")
                cells.append("-" if found is None else "{:.3f}/{:.3f}/{:.2f}".format(*found))
                contents.append(found[0] if found else float("nan"))
            ordered = all(a < b for a, b in itertools.pairwise(contents))
            print(f"{style_name:<12}" + "".join(f"{c:>22}" for c in cells) + ("  ok" if ordered else "  NOT"))
        for index, measure in enumerate(measures):
            spreads = []
            for look in LOOK_NAMES:
                values = [scores[f"{photo}-{s}-{look}"][index] for s in STYLE_NAMES if f"{photo}-{s}-{look}" in scores]
                spreads.append(f"{max(values) / min(values):.2f}x" if values else "-")
            print(f"{'spread ' + measure:<12}" + "".join(f"{c:>22}" for c in spreads))
    for index, measure in enumerate(measures):
        line = []
        for look in LOOK_NAMES:
            values = [v[index] for k, v in scores.items() if k.endswith(f"-{look}")]
            line.append(f"{look} {max(values) / min(values):.2f}x" if values else f"{look} -")
        print(f"spread of {measure} over both photos and all styles: " + ", ".join(line))
    if times:
        by_look = {look: [t for k, t in times.items() if k.endswith(f"-{look}")] for look in LOOK_NAMES}
        print("mean job time: " + ", ".join(f"{k} {sum(v) / len(v):.1f} s" for k, v in by_look.items() if v))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--label", default="after", help="subfolder of --out: one per engine version")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--score-only", action="store_true")
    args = parser.parse_args()
    out = args.out / args.label
    out.mkdir(parents=True, exist_ok=True)
    times_file = out / "times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    if not args.score_only:
        times = paint(out, args.size, args.steps)
    for photo in PHOTOS:
        print(f"contact sheet: {sheet(out, photo)}")
    report(score(out), times)


if __name__ == "__main__":
    main()
