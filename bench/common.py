"""What the bench scripts share: the project root on the path, the shared pictures, a table printer."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TABLE = "--- table ---"  # bench/gpu_check.py copies what follows this line into its summary


def shared_image(kind: str, name: str) -> Path:
    """A shared picture by kind (content, style) and stem: in shared/images beside the checkout or above it
    (a worktree's), or the GPU trip's copy; never copied into the repository."""
    places = [parent / "shared" / "images" for parent in ROOT.parents] + [ROOT / ".gpu-trip" / "images"]
    for place in places:
        found = sorted((place / kind).glob(f"{name}.*"))
        if found:
            return found[0]
    raise SystemExit(f"no {kind}/{name}.* in shared/images beside or above {ROOT}")


def print_table(header: list[str], rows: list[list[str]], notes: list[str] = ()) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print(TABLE)
    for line in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths)))
    print("\n".join(notes), flush=True)


def sheet(pictures: list, path: str, height: int = 256) -> None:
    """The pictures side by side at one height, as one PNG to look at."""
    from PIL import Image

    scaled = [p.resize((max(1, round(p.width * height / p.height)), height)) for p in pictures]
    canvas = Image.new("RGB", (sum(p.width for p in scaled) + 8 * (len(scaled) + 1), height + 16), "white")
    x = 8
    for picture in scaled:
        canvas.paste(picture, (x, 8))
        x += picture.width + 8
    canvas.save(path)
