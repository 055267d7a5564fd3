"""Service latency on this machine, against `nst up` started here (loopback only, bounded in count and time):
POST /jobs and GET /jobs/{id} latency (p50, p99) under 50 concurrent clients, the delay from a worker's
progress event to an SSE client, and queue pickup time.

    .venv/bin/python bench/service_bench.py [--clients 50] [--posts-per-client 4] [--gets-per-client 20]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def png(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def start_stack(port: int, storage: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NST_")}
    env.update(NST_STORAGE_DIR=str(storage), NST_DEVICE="cpu", NST_MAX_QUEUED_JOBS="100000")
    process = subprocess.Popen([sys.executable, "-m", "nst_cli.main", "up", "--port", str(port)], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise SystemExit("the stack did not start")


async def post_job(client: httpx.AsyncClient, content: bytes, style: bytes, **form: str) -> tuple[float, dict]:
    started = time.perf_counter()
    response = await client.post("/jobs", files=[("content", ("c.png", content)), ("style", ("s.png", style))],
                                 data={"max_size": "64", "steps": "1", **form})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response.json()


async def measure(base: str, clients: int, posts: int, gets: int) -> None:
    content, style = png(64, 48, 1), png(64, 64, 2)
    limits = httpx.Limits(max_connections=clients + 10)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        # Pickup: an idle queue, one job at a time.
        pickups = []
        for _ in range(10):
            _, job = await post_job(client, content, style)
            while True:
                state = (await client.get(f"/jobs/{job['id']}")).json()
                if state["status"] in ("succeeded", "failed"):
                    break
                await asyncio.sleep(0.02)
            created, started = (datetime.fromisoformat(state[k]) for k in ("created_at", "started_at"))
            pickups.append((started - created).total_seconds())

        # Event delay: an SSE client timing each progress event against its stream id (Redis time, in ms).
        _, job = await post_job(client, content, style, steps="40")
        delays = []
        async with client.stream("GET", f"/jobs/{job['id']}/events") as stream:
            event_id = None
            async for line in stream.aiter_lines():
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("event: progress") and event_id:
                    delays.append(time.time() * 1000 - int(event_id.split("-")[0]))
                elif line.startswith("event: completed"):
                    break

        # POST latency under concurrency.
        post_times: list[float] = []
        ids: list[str] = []

        async def poster() -> None:
            for _ in range(posts):
                elapsed, posted = await post_job(client, content, style)
                post_times.append(elapsed)
                ids.append(posted["id"])

        started = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(clients)))
        post_wall = time.perf_counter() - started

        # GET latency under concurrency (while the worker drains the queue).
        get_times: list[float] = []

        async def getter(i: int) -> None:
            for j in range(gets):
                t = time.perf_counter()
                (await client.get(f"/jobs/{ids[(i * gets + j) % len(ids)]}")).raise_for_status()
                get_times.append(time.perf_counter() - t)

        await asyncio.gather(*(getter(i) for i in range(clients)))
        for job_id in ids:  # leave nothing queued behind
            await client.post(f"/jobs/{job_id}/cancel")

    ms = lambda v: f"{v * 1000:7.1f} ms"  # noqa: E731
    print(f"{'measure':<34} {'p50':>10} {'p99':>10} {'target':>10}")
    print(f"{'POST /jobs, ' + str(clients) + ' clients':<34} {ms(pct(post_times, 50)):>10} {ms(pct(post_times, 99)):>10} "
          f"{'p99<50ms':>10}  ({len(post_times)} posts, {len(post_times) / post_wall:.0f}/s)")
    print(f"{'GET /jobs/{id}, ' + str(clients) + ' clients':<34} {ms(pct(get_times, 50)):>10} {ms(pct(get_times, 99)):>10} "
          f"{'p99<10ms':>10}  ({len(get_times)} gets)")
    print(f"{'progress event -> SSE client':<34} {pct(delays, 50):7.1f} ms {pct(delays, 99):7.1f} ms {'<100ms':>10}")
    print(f"{'queue pickup (idle worker)':<34} {ms(pct(pickups, 50)):>10} {ms(pct(pickups, 99)):>10} {'<200ms':>10}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--posts-per-client", type=int, default=4)
    parser.add_argument("--gets-per-client", type=int, default=20)
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        process = start_stack(port, Path(tmp) / "storage")
        try:
            asyncio.run(asyncio.wait_for(measure(f"http://127.0.0.1:{port}", args.clients, args.posts_per_client,
                                                 args.gets_per_client), timeout=600))
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(60)


if __name__ == "__main__":
    main()
