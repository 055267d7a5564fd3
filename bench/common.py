"""What the bench scripts share: the project root on the path, the shared pictures, options, children, tables."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TABLE = "--- table ---"  # bench/gpu_check.py copies what follows this line into its summary


def shared_image(kind: str, name: str) -> Path:
    """A shared picture by kind and stem: from $BENCH_IMAGES, shared/images beside or above the checkout, the trip."""
    given = [Path(os.environ["BENCH_IMAGES"])] if os.environ.get("BENCH_IMAGES") else []  # a test's own pictures
    places = [*given, *(parent / "shared" / "images" for parent in ROOT.parents), ROOT / ".gpu-trip" / "images"]
    found = [path for place in places for path in sorted((place / kind).glob(f"{name}.*"))]
    return found[0] if found else sys.exit(f"no {kind}/{name}.* in shared/images beside or above {ROOT}")


def parser(doc: str, device: str = "cpu") -> argparse.ArgumentParser:
    """The script's docstring as its help, with --device and --json (the results, for bench/gpu_check.py)."""
    made = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    made.add_argument("--device", default=device)
    made.add_argument("--json", help="write the results here as JSON")
    return made


@contextlib.contextmanager
def stack(**settings):
    """`nst up` (tests/cli/stack.py) in a folder of its own, stopped at the end; its exit status in .stopped."""
    from tests.cli.stack import NstUp

    with tempfile.TemporaryDirectory() as folder:
        up = NstUp(Path(folder), **settings)
        try:
            yield up
        finally:
            up.stopped = up.stop()


def write_json(path: str | None, result: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(result, indent=1, default=str))


def child(script: str, argv: list[str]) -> dict | None:
    """What `script` run in a process of its own (its own peak memory) prints as JSON last; None when it failed."""
    from nst_shared.allocator import with_engine_malloc

    env = with_engine_malloc(os.environ)
    done = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True, env=env)
    if done.returncode:
        return print(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}", flush=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def noise(width: int, height: int) -> tuple:
    """A content picture and a style list of random pixels (seeds 0 and 1): what engine timings run on."""
    pixels = [np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8) for seed in (0, 1)]
    return Image.fromarray(pixels[0]), [Image.fromarray(pixels[1])]


def params(size: int, steps: int, **more):
    """Unvalidated (model_copy): engine_bench.py largest goes past the API's bounds to find what fits."""
    from nst_shared.params import TransferParams

    return TransferParams().model_copy(update=dict(max_size=size, steps=steps, scales=1, seed=0, **more))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        sys.modules["torch"].cuda.synchronize()  # imported by every caller that runs on a device


def print_table(header: list[str], rows: list[list[str]], notes: list[str] = ()) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print(TABLE)
    for line in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths)))
    print("\n".join(notes), flush=True)


def sheet(rows: list, path, height: int = 256) -> None:
    """Pictures at one height side by side, in rows (a list of pictures is one row), as one PNG to look at."""
    rows = [[p.resize((max(1, round(p.width * height / p.height)), height)) for p in row] for row in rows]
    width = max(sum(p.width + 8 for p in row) for row in rows) + 8
    canvas = Image.new("RGB", (width, len(rows) * (height + 8) + 8), "white")
    for y, row in enumerate(rows):
        for x, picture in zip(itertools.accumulate((p.width + 8 for p in row), initial=8), row):
            canvas.paste(picture, (x, 8 + y * (height + 8)))
    canvas.save(path)
