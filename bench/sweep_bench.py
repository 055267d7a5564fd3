"""How long a sweep takes to its contact sheet with 1, 2 and 4 workers: each cell is a job on the queue, so N
workers paint N cells at once.

Each row runs `nst up --workers N` (its own embedded Redis, the API, N warm workers) on loopback, submits one
sweep, polls it until every cell has ended and downloads the sheet; the time is from the POST to the sheet's
last byte, the best of `--rounds`. The fake engine (tests/engines.py's SlowEngine, 0.1 s a step, no CPU) shows
the queue's parallelism alone; `--real` adds rows with the real engine at a small size (CPU-bound: on a machine
of two cores, two workers share them).

    .venv/bin/python bench/sweep_bench.py [--workers 1,2,4] [--rounds 2] [--real] [--real-workers 1,2]
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FAKE_ENGINE = "tests.engines:SlowEngine"
FAKE_AXES = ["style_weight=5,10,20,40", "look=subtle,painterly"]
FAKE_FORM = {"max_size": "64", "steps": "20"}  # 2 s a cell with SlowEngine; 8 cells
REAL_FORM = {"max_size": "128", "steps": "30"}
REAL_AXES = ["style_weight=5,15,45,135"]


def picture(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(x / (17 + 5 * c) + c) * np.cos(y / (13 + 3 * c)) for c in range(3)], axis=-1)
    pixels = np.clip(base * 90 + 128 + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """`nst up --workers N` in a folder of its own, stopped with Ctrl-C as a person would."""

    def __init__(self, workers: int, engine: str | None, *, extra_env: dict[str, str] | None = None) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="nst-sweep-bench-")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("NST_")}
        env.update(
            NST_STORAGE_DIR=str(Path(self.folder.name) / "storage"),
            NST_DEVICE="cpu",
            NST_RATE_LIMIT_SUBMISSIONS_PER_MIN="0",
            NST_RATE_LIMIT_REQUESTS_PER_MIN="0",
            NST_LOG_LEVEL="WARNING",
            **({"NST_ENGINE": engine} if engine else {}),
            **(extra_env or {}),
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nst_cli.main", "up", "--port", str(port), "--workers", str(workers)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{self.url}/readyz", timeout=2)
                if ready.status_code == 200 and ready.json()["workers"] >= workers:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"nst up with {workers} workers did not get ready")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.folder.cleanup()


def time_to_sheet(url: str, form: dict[str, str], axes: list[str]) -> tuple[float, int]:
    """Seconds from the POST to the sheet, and the number of cells."""
    files = [("content", ("content.png", picture(160, 120, 1))), ("style", ("style.png", picture(128, 128, 2)))]
    with httpx.Client(base_url=url, timeout=60) as client:
        started = time.perf_counter()
        answer = client.post("/sweeps", files=files, data={**form, "sweep": axes})
        answer.raise_for_status()
        sweep = answer.json()
        while client.get(f"/sweeps/{sweep['id']}").json()["status"] != "completed":
            time.sleep(0.05)
        sheet = client.get(f"/sweeps/{sweep['id']}/sheet")
        sheet.raise_for_status()
        elapsed = time.perf_counter() - started
        client.delete(f"/sweeps/{sweep['id']}")
    return elapsed, len(sweep["cells"])


def rows(
    label: str,
    workers: list[int],
    engine: str | None,
    form: dict[str, str],
    axes: list[str],
    rounds: int,
    *,
    env_for: Callable[[int], dict[str, str]] = lambda count: {},
) -> None:
    """One row per worker count; speed-up against the first row (efficiency: per worker beyond it)."""
    first: tuple[int, float] | None = None
    for count in workers:
        stack = Stack(count, engine, extra_env=env_for(count))
        try:
            times = []
            for _ in range(rounds):
                elapsed, cells = time_to_sheet(stack.url, form, axes)
                times.append(elapsed)
        finally:
            stack.stop()
        best = min(times)
        first = first or (count, best)
        speedup = first[1] / best
        efficiency = speedup / (count / first[0])
        print(
            f"{label:<5} {count:>7} {cells:>5} {best:>11.2f} {speedup:>8.2f}x {efficiency:>10.0%}"
            f"   rounds: {', '.join(f'{t:.2f}' for t in times)}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4", help="worker counts of the fake-engine rows")
    parser.add_argument("--rounds", type=int, default=2, help="sweeps per row (the best is shown)")
    parser.add_argument("--real", action="store_true", help="also rows with the real engine at 128 px")
    parser.add_argument("--real-workers", default="1,2", help="worker counts of the real-engine rows")
    parser.add_argument(
        "--cores",
        type=int,
        default=os.cpu_count() or 1,
        help="real rows: each of N workers gets cores/N torch threads (OMP_NUM_THREADS), so they share the cores "
        "instead of each taking them all",
    )
    parser.add_argument("--precision", default="bf16", help="real rows: NST_PRECISION, the same for every row")
    args = parser.parse_args()
    print(f"{'engine':<5} {'workers':>7} {'cells':>5} {'to sheet s':>11} {'speed-up':>9} {'efficiency':>10}")
    fake_workers = [int(n) for n in args.workers.split(",") if n]  # --workers "": the real rows alone
    if fake_workers:
        rows("fake", fake_workers, FAKE_ENGINE, FAKE_FORM, FAKE_AXES, args.rounds)
    if args.real:
        real_workers = [int(n) for n in args.real_workers.split(",")]
        rows(
            "real",
            real_workers,
            None,
            REAL_FORM,
            REAL_AXES,
            args.rounds,
            env_for=lambda count: {
                "OMP_NUM_THREADS": str(max(1, args.cores // count)),
                "NST_PRECISION": args.precision,
            },
        )


if __name__ == "__main__":
    main()
