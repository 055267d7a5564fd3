"""How long a sweep takes to its contact sheet with 1, 2 and 4 workers under `nst up`, on the fake engine (the queue's
parallelism alone) and with --real the real engine at 128 px (bench/README.md has the results):

    .venv/bin/python bench/sweep_bench.py [--workers 1 2 4] [--rounds 2] [--real] [--real-workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import time

from common import print_table, stack

from tests.conftest import make_image

ROWS = {  # engine: (NST_ENGINE, max_size, steps, axes); the fake one paints 8 cells of 2 s
    "fake": ("tests.engines:SlowEngine", "64", "20", ["style_weight=5,10,20,40", "look=subtle,painterly"]),
    "real": ("nst_core.transfer:StyleTransfer", "128", "30", ["style_weight=5,15,45,135"]),
}


def time_to_sheet(up, size: str, steps: str, axes: list[str]) -> tuple[float, int]:
    """Seconds from the POST to the sheet's last byte, and the number of cells."""
    files = {"content": make_image(160, 120, seed=1), "style": make_image(128, 128, seed=2)}
    with up.client() as client:
        started = time.perf_counter()
        form = {"max_size": size, "steps": steps, "sweep": axes}
        sweep = client.post("/sweeps", files=files, data=form).raise_for_status().json()
        while client.get(f"/sweeps/{sweep['id']}").json()["status"] != "completed":
            time.sleep(0.05)
        client.get(f"/sweeps/{sweep['id']}/sheet").raise_for_status()
        return time.perf_counter() - started, len(sweep["cells"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4], help="the fake engine's rows")
    parser.add_argument("--rounds", type=int, default=2, help="sweeps per row (the best is shown)")
    parser.add_argument("--real", action="store_true", help="also rows with the real engine at 128 px")
    parser.add_argument("--real-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="real rows: split among the workers")
    parser.add_argument("--precision", default="bf16", help="real rows: NST_PRECISION, the same for every row")
    args = parser.parse_args()
    table = []
    for label, counts in (("fake", args.workers), ("real", args.real_workers if args.real else [])):
        (engine, *job), first = ROWS[label], None
        for count in counts:
            os.environ["OMP_NUM_THREADS"] = str(max(1, args.cores // count))  # read by the workers nst up starts
            with stack(workers=count, engine=engine, precision=args.precision, log_level="WARNING") as up:
                times = [time_to_sheet(up, *job) for _ in range(args.rounds)]
            best, cells = min(times)
            first = first or (count, best)
            speedup, rounds = first[1] / best, ", ".join(f"{t:.2f}" for t, _ in times)
            cells = f"{label} {count} {cells} {best:.2f} {speedup:.2f}x {speedup * first[0] / count:.0%}".split()
            table.append([*cells, rounds])
    print_table(["engine", "workers", "cells", "to sheet s", "speed-up", "efficiency", "rounds"], table)


if __name__ == "__main__":
    main()
