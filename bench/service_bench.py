"""How fast is the service: the API's own CPU per request and the request rates it holds with p99 under 100 ms (no
worker, the load generator not counted), or with --jobs a job end to end (bench/README.md says how each is measured):

    .venv/bin/python bench/service_bench.py [--baseline REF] [--api-workers N] [--step-s 4] [--rounds 3]
    .venv/bin/python bench/service_bench.py --jobs 3 [--device cuda] [--max-size 64] [--steps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from common import ROOT, parser, print_table, sheet, stack, write_json
from PIL import Image

from nst_shared.images import fit_size

P99_LIMIT_S, GET_RATES, POST_RATES = 0.100, (250, 500, 750, 1000, 1500), (15, 30, 45, 60, 90)
BOUNDARY = "nstbenchboundary7MA4YWxkTrZu0gW"


def photo_jpeg(width: int, height: int, seed: int, target_bytes: int = 2**20) -> bytes:
    """A photo-like JPEG (smooth shapes and grain) of about `target_bytes`."""
    rng, (y, x) = np.random.default_rng(seed), np.mgrid[0:height, 0:width].astype(np.float32)
    smooth = np.stack([np.sin(x / (37 + 11 * c) + c) * np.cos(y / (23 + 7 * c)) for c in range(3)], axis=-1) * 90 + 128
    for grain in np.linspace(2, 80, 40):
        buffer = io.BytesIO()
        noisy = np.clip(smooth + rng.normal(0, grain, smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(buffer, "JPEG", quality=90)
        if buffer.tell() >= target_bytes:
            break
    return buffer.getvalue()


def request(method: str, path: str, files: dict[str, bytes] | None = None, fields: dict | None = None) -> bytes:
    """One HTTP/1.1 request as bytes, a multipart form when `files` are given."""
    body, head = b"", f"{method} {path} HTTP/1.1\r\nHost: bench\r\n"
    if files:
        field = '--{}\r\nContent-Disposition: form-data; name="{}"\r\n\r\n{}\r\n'
        parts = [field.format(BOUNDARY, k, v).encode() for k, v in (fields or {}).items()]
        for name, data in files.items():
            disposition = f'form-data; name="{name}"; filename="{name}.jpg"\r\nContent-Type: image/jpeg'
            parts.append(f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
        body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
        head += f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


class Pool:
    """Keep-alive connections to one port, handed out one request at a time; another opened when all are busy."""

    def __init__(self, port: int) -> None:
        self.at, self.idle = ("127.0.0.1", port), []

    async def send(self, raw: bytes, expect: int) -> bytes:
        reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection(*self.at, limit=2**20)
        try:
            writer.write(raw)
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            length = int(head.split("content-length:")[1].split("\r\n")[0]) if "content-length:" in head else 0
            body = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):  # closed by the server after its keep-alive
            writer.close()
            return await self.send(raw, expect)
        if int(head.split()[1]) != expect:
            writer.close()
            raise RuntimeError(f"answered {head.split()[1]}, not {expect}: {body[:300]!r}")
        self.idle.append((reader, writer))
        return body


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants (uvicorn's workers)."""
    stats = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):  # gone meanwhile
            stats[int(entry.parent.name)] = entry.read_text().rsplit(")", 1)[1].split()
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += [child for child, fields in stats.items() if int(fields[1]) == tree[-1]]
    return sum(int(stats[p][11]) + int(stats[p][12]) for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


async def cpu_ms(api_pids: list[int], pool: Pool, raw: bytes, expect: int, count: int, concurrency: int) -> float:
    """The API's CPU ms per request over `count` requests from `concurrency` clients at once."""
    left, before = [count], sum(cpu_s(p) for p in api_pids)

    async def client() -> None:
        while left[0] > 0:
            left[0] -= 1
            await pool.send(raw, expect)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return (sum(cpu_s(p) for p in api_pids) - before) / count * 1000


async def highest_rate(pool: Pool, raw: bytes, expect: int, rates: tuple, step_s: float, notes: list[str]) -> str:
    """Open loop: requests on a fixed schedule, each timed from when it was due (a late one counts its wait); the
    highest rate whose p99 stays under the limit."""

    async def timed(due: float) -> float:
        try:
            await pool.send(raw, expect)
            return time.perf_counter() - due
        except (RuntimeError, OSError, asyncio.IncompleteReadError):
            return float("inf")

    held = f"< {rates[0]}"
    for rate in rates:
        tasks, start = [], time.perf_counter() + 0.05
        for i in range(int(rate * step_s)):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(timed(start + i / rate)))
        latencies = sorted(await asyncio.gather(*tasks))
        p99 = latencies[int(0.99 * (len(latencies) - 1))]
        sent = len(tasks) / (time.perf_counter() - start)
        notes.append(f"at {rate}/s: p99 {p99 * 1000:.0f} ms (sent at {sent:.0f}/s)")
        if p99 > P99_LIMIT_S:
            break
        held = f"{rate} ({p99 * 1000:.0f} ms)"
    return held


async def measure(apis: dict, post: bytes, args: argparse.Namespace) -> dict[str, dict]:
    """CPU per request, best of the rounds taken in turn from each API (so each sees the same spells of load),
    then the rates each holds."""
    pools = {name: Pool(up.port) for name, up in apis.items()}
    gets, found = {}, {name: {"notes": []} for name in apis}
    for name, pool in pools.items():
        for _ in range(5):  # warm: imports, connections, scripts loaded
            job = json.loads(await pool.send(post, 202))
        gets[name] = request("GET", f"/jobs/{job['id']}")
    for _ in range(args.rounds):
        for name, up in apis.items():
            pids = up.children()["api"]
            get = await cpu_ms(pids, pools[name], gets[name], 200, 2000, 8)
            posted = await cpu_ms(pids, pools[name], post, 202, 40, 4)
            found[name]["get_ms"] = min(found[name].get("get_ms", get), get)
            found[name]["post_ms"] = min(found[name].get("post_ms", posted), posted)
    for name, pool in pools.items():
        notes = found[name]["notes"]
        found[name]["get_rate"] = await highest_rate(pool, gets[name], 200, GET_RATES, args.step_s, notes)
        found[name]["post_rate"] = await highest_rate(pool, post, 202, POST_RATES, args.step_s, notes)
    return found


def api_cost(args: argparse.Namespace) -> None:
    content, style = photo_jpeg(1600, 1200, 1), photo_jpeg(1200, 1200, 2)
    post = request("POST", "/jobs", {"content": content, "style": style}, {"max_size": "256", "steps": "10"})
    limits = dict.fromkeys(["max_queued_jobs", "rate_limit_requests_per_min", "rate_limit_submissions_per_min"], 10**9)
    apis, settings = {}, dict(workers=0, log_level="WARNING", **limits)
    with tempfile.TemporaryDirectory() as old, contextlib.ExitStack() as stacks:
        if args.baseline:  # the git ref's tree, run with the same virtual environment
            archive = subprocess.run(["git", "archive", args.baseline], cwd=ROOT, check=True, capture_output=True)
            tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(old, filter="data")
            apis[f"old ({args.baseline})"] = stacks.enter_context(stack(root=Path(old), **settings))
        name = f"{'new' if args.baseline else 'this checkout'}, {args.api_workers} API processes"
        apis[name] = stacks.enter_context(stack(api_workers=args.api_workers, **settings))
        found = asyncio.run(measure(apis, post, args))
    rows = [
        ["API CPU per GET /jobs/{id} ms", *(f"{f['get_ms']:.2f}" for f in found.values()), "<= 1"],
        ["API CPU per POST /jobs ms (1 MB + 1 MB JPEG)", *(f"{f['post_ms']:.1f}" for f in found.values()), "<= 25"],
        ["GET /jobs/{id} per s held, p99 < 100 ms", *(f["get_rate"] for f in found.values()), ">= 500"],
        ["POST /jobs per s held, p99 < 100 ms", *(f["post_rate"] for f in found.values()), ">= 30"],
    ]
    notes = [f"{name}: " + "; ".join(f["notes"]) for name, f in found.items()]
    print_table(["measure", *found, "target"], rows, [*notes, f"load average after: {os.getloadavg()}"])


def one_job(client, i: int, form: dict) -> tuple[dict, Image.Image]:
    """Job i + 1 followed over its event stream to `completed`, its PNG checked; the result and the picture."""
    photo, style = ROOT / "examples" / "chelsea.jpg", ROOT / "examples" / ("swirls.jpg", "mosaic.jpg")[i % 2]
    started = time.perf_counter()
    job = client.post("/jobs", files={"content": photo.read_bytes(), "style": style.read_bytes()}, data=form).json()
    with client.stream("GET", job["links"]["events"], timeout=300) as events:
        completed = "event: completed" in "".join(events.iter_text())
    image = Image.open(io.BytesIO(client.get(f"/jobs/{job['id']}/result").content))
    done_s, final = time.perf_counter() - started, client.get(f"/jobs/{job['id']}").json()
    expected = fit_size(*Image.open(photo).size, final["params"]["max_size"])
    ok = completed and image.format == "PNG" and image.size == expected and final["status"] == "succeeded"
    at = {k: datetime.fromisoformat(final[k]) for k in ("created_at", "started_at")}
    found = {"job": i + 1, "ok": ok, "submit_to_png_s": done_s, "size": image.size, "steps": final["params"]["steps"]}
    pickup_s = (at["started_at"] - at["created_at"]).total_seconds()
    return {**found, "queue_pickup_s": pickup_s, "precision": final.get("precision")}, image.convert("RGB")


def end_to_end(args: argparse.Namespace) -> dict:
    form = {name: str(getattr(args, name)) for name in ("max_size", "steps") if getattr(args, name)}
    started = time.perf_counter()
    with stack(workers=1, device=args.device, log_format="text") as up, up.client() as client:
        start_s = time.perf_counter() - started
        jobs, pictures = zip(*(one_job(client, i, form) for i in range(args.jobs)))
    if args.picture and pictures:
        sheet([pictures], args.picture, height=192)
    cells = "{job} {ok} {size[0]}x{size[1]} {steps} {submit_to_png_s:.2f} {queue_pickup_s:.3f}"
    rows = [cells.format(**j).split() for j in jobs]
    print_table(["job", "ok", "size", "steps", "submit->PNG s", "pickup s"], rows, [f"nst up ready in {start_s:.1f} s"])
    all(j["ok"] for j in jobs) or sys.exit("a job did not end as a checked PNG")
    return {"device": args.device, "start_s": start_s, "jobs": jobs}


def main() -> None:
    options = parser(__doc__)  # --device and --json: --jobs only
    options.add_argument("--baseline", help="a git ref whose API is measured too (e.g. main), for an old column")
    options.add_argument("--api-workers", type=int, default=1, help="uvicorn worker processes of this checkout")
    options.add_argument("--step-s", type=float, default=4.0, help="seconds at each request rate")
    options.add_argument("--rounds", type=int, default=3, help="CPU measurements per API, the best kept")
    options.add_argument("--jobs", type=int, help="a job end to end, N times, instead of the API's own cost")
    options.add_argument("--max-size", type=int, help="--jobs: the jobs' max_size (default: the device's)")
    options.add_argument("--steps", type=int, help="--jobs: the jobs' steps (default: the device's)")
    options.add_argument("--picture", help="--jobs: the results side by side (PNG)")
    args = options.parse_args()
    write_json(args.json, end_to_end(args)) if args.jobs else api_cost(args)


if __name__ == "__main__":
    main()
