"""A fleet on one machine: six hosts in network namespaces on a private bridge (redis, storage, api, w1, w2,
client), each with its own address, running the real processes; links can be cut silently and restored.

The bridge lives in a seventh namespace (the switch), so nothing of the bed touches this machine's own network.
A silent cut sets the switch's end of a host's veth pair down: the host's packets vanish and its connections
time out, as behind a dead switch port. tests/fleet/ runs it small (fake engine), bench/fault_bench.py cuts larger.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis

from nst_cli.up import api_command
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "nstbed-"  # every namespace of a bed: nstbed-<pid of the process that built it>-<host>
SUBNET = "10.231.0"  # inside the bed's own namespaces only
ADDRESSES = {"redis": 2, "storage": 3, "api": 4, "w1": 5, "w2": 6, "client": 7}
WORKERS = ("w1", "w2")
REDIS_PASSWORD = "bed-secret-7f3a"
REDIS_PORT = 6379
S3_PORT = 5000
API_PORTS = (8000, 8001)
BUCKET = "nst-bed"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
_CLONE_NEWNET = 0x40000000

T = TypeVar("T")


class BedError(RuntimeError):
    """Raised when the bed cannot be built (no root, no iproute2) or a process of it does not come up."""


def can_build() -> str | None:
    """Why a bed cannot be built here (None when it can): it needs root and iproute2."""
    if os.geteuid() != 0:
        return "the multi-host bed makes network namespaces: it needs root (CI runs as root)"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "the multi-host bed needs iproute2's `ip netns`"
    return None


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise BedError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _destroy_namespace(name: str) -> None:
    """Kill what still runs in the namespace (processes the bed started there), then delete it."""
    for pid in ip("netns", "pids", name, check=False).split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    ip("netns", "delete", name, check=False)


def remove_leftovers() -> list[str]:
    """Namespaces of beds whose builder died without cleaning up (a crashed run): removed, and named."""
    removed = []
    for name in _namespaces():
        if not name.startswith(PREFIX):
            continue
        owner = name[len(PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            _destroy_namespace(name)
            removed.append(name)
    return removed


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def inside(namespace: str) -> Iterator[None]:
    """This thread's sockets opened meanwhile belong to `namespace` (setns on this thread only)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


@dataclass
class Process:
    host: str
    name: str
    command: list[str]
    env: dict[str, str]
    popen: subprocess.Popen | None = None


@dataclass
class Bed:
    """The six hosts, their links and processes. `build()` then `start()`; `close()` undoes everything."""

    root: Path
    run_id: str = field(default_factory=lambda: str(os.getpid()))
    processes: dict[str, Process] = field(default_factory=dict)
    fleet_settings: dict[str, str] = field(default_factory=dict)

    # Names and addresses.
    def namespace(self, host: str) -> str:
        return f"{PREFIX}{self.run_id}-{host}"

    @property
    def switch(self) -> str:
        return self.namespace("switch")

    @staticmethod
    def address(host: str) -> str:
        return f"{SUBNET}.{ADDRESSES[host]}"

    @property
    def redis_url(self) -> str:
        return f"rediss://:{REDIS_PASSWORD}@{self.address('redis')}:{REDIS_PORT}/0"

    @property
    def redis_ca_file(self) -> Path:
        return self.root / "redis" / "tls" / "ca.crt"

    @property
    def s3_url(self) -> str:
        return f"http://{self.address('storage')}:{S3_PORT}"

    @property
    def api_urls(self) -> list[str]:
        return [f"http://{self.address('api')}:{port}" for port in API_PORTS]

    # The network.
    def build(self) -> None:
        """The switch (a bridge) and one veth pair per host: eth0 in the host, v-<host> on the bridge."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            ip("netns", "add", self.switch)
            ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", self.switch, "link", "set", "br0", "up")
            for host in ADDRESSES:
                ns = self.namespace(host)
                ip("netns", "add", ns)
                ip("-n", ns, "link", "set", "lo", "up")
                ip("-n", self.switch, "link", "add", f"v-{host}", "type", "veth", "peer", "name", "eth0", "netns", ns)
                ip("-n", self.switch, "link", "set", f"v-{host}", "master", "br0", "up")
                ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
                ip("-n", ns, "link", "set", "eth0", "up")
                (self.root / host / "tmp").mkdir(parents=True, exist_ok=True)
        except BaseException:
            self.close()
            raise

    def cut(self, host: str) -> None:
        """Silently cut `host` off: its switch port goes down, its packets vanish (no error, no reset)."""
        ip("-n", self.switch, "link", "set", f"v-{host}", "down")

    def restore(self, host: str) -> None:
        ip("-n", self.switch, "link", "set", f"v-{host}", "up")

    @contextlib.contextmanager
    def on(self, host: str) -> Iterator[None]:
        """Run this thread's network calls from `host` (e.g. the test itself as the client)."""
        with inside(self.namespace(host)):
            yield

    def call(self, host: str, action: Callable[[], T]) -> T:
        with self.on(host):
            return action()

    # Processes.
    def spawn(self, host: str, name: str, command: list[str], env: Mapping[str, str] | None = None) -> Process:
        """Start `command` on `host`; its output goes to <root>/<host>/<name>.log."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("NST_")}
        process = Process(host, name, command, {**base, "TMPDIR": str(self.root / host / "tmp"), **(env or {})})
        self.processes[name] = process
        self._popen(process)
        return process

    def _popen(self, process: Process) -> None:
        log = open(self.root / process.host / f"{process.name}.log", "ab")
        process.popen = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace(process.host), *process.command],
            env=process.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def stop(self, name: str, *, sig: int = signal.SIGTERM, timeout_s: float = 20) -> None:
        popen = self.processes[name].popen
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(sig)
        try:
            popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)

    def restart(self, name: str) -> None:
        self.stop(name)
        self._popen(self.processes[name])

    def log(self, name: str) -> str:
        process = self.processes[name]
        return (self.root / process.host / f"{process.name}.log").read_text(errors="replace")

    # The services.
    def start(self, **settings: Any) -> None:
        """Redis and the S3 server, then the fleet (two APIs, a worker per worker host) with `settings`."""
        self.start_redis()
        self.start_storage()
        self.start_fleet(**settings)

    def start_redis(self) -> None:
        """Debian's redis-server (it links OpenSSL): TLS only, a password, the append-only file."""
        from tests.cli.test_up_tls import make_certificates

        data, tls = self.root / "redis" / "data", self.redis_ca_file.parent
        data.mkdir(parents=True, exist_ok=True)
        tls.mkdir(parents=True, exist_ok=True)
        ca, cert, key = make_certificates(tls, address=self.address("redis"))
        command = ["/usr/bin/redis-server", "--bind", self.address("redis"), "--port", "0"]
        command += ["--tls-port", str(REDIS_PORT), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
        command += ["--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--requirepass", REDIS_PASSWORD]
        command += ["--appendonly", "yes", "--save", "", "--dir", str(data)]
        self.spawn("redis", "redis", command)
        self.wait_for_redis()

    def wait_for_redis(self) -> None:
        wait_until(lambda: self.call("client", self._pings), timeout_s=20, what="redis-server on the redis host")

    def _pings(self) -> bool:
        try:
            return bool(self.redis().ping())
        except redis.exceptions.RedisError:
            return False

    def redis(self) -> redis.Redis:
        """A client for the test's own look at the records; use it inside `on(host)`."""
        from nst_shared.redis_connection import connect
        from nst_shared.settings import Settings

        return connect(Settings(redis_url=self.redis_url, redis_ca_file=str(self.redis_ca_file)), socket_timeout_s=5)

    def start_storage(self) -> None:
        binary = str(Path(sys.executable).parent / "moto_server")
        self.spawn("storage", "s3", [binary, "-H", self.address("storage"), "-p", str(S3_PORT)], S3_ENV)
        wait_until(
            lambda: self.call("client", lambda: answers(f"{self.s3_url}/moto-api/")),
            timeout_s=60,
            what="the S3 server on the storage host",
        )
        self.call("client", lambda: self.s3().create_bucket(Bucket=BUCKET))

    def s3(self) -> Any:
        """A boto3 client of the bed's bucket; use it inside `on(host)`."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1}),
        )

    def fleet_env(self, **settings: Any) -> dict[str, str]:
        return {
            **S3_ENV,
            "NST_REDIS_URL": self.redis_url,
            "NST_REDIS_CA_FILE": str(self.redis_ca_file),
            "NST_STORAGE_URL": f"s3://{BUCKET}/jobs",
            "NST_S3_ENDPOINT_URL": self.s3_url,
            "NST_DEVICE": "cpu",
            "NST_RATE_LIMIT_REQUESTS_PER_MIN": "0",
            "NST_RATE_LIMIT_SUBMISSIONS_PER_MIN": "0",
            "NST_LOG_FORMAT": "text",
            **{f"NST_{k.upper()}": str(v) for k, v in settings.items()},
        }

    def start_fleet(self, **settings: Any) -> None:
        """Two API processes on the api host and one worker on each worker host, all with `settings`."""
        env = self.fleet_env(**settings)
        self.fleet_settings = env
        for i, port in enumerate(API_PORTS):
            self.spawn("api", f"api-{i}", api_command(self.address("api"), port), env)
        for host in WORKERS:
            self.spawn(host, host, [sys.executable, "-m", "worker", "--name", host], env)
        for url in self.api_urls:
            wait_until(lambda u=url: self.call("client", lambda: answers(f"{u}/healthz")), timeout_s=60, what=url)
        self.wait_for_workers(len(WORKERS))

    def wait_for_workers(self, count: int, *, timeout_s: float = 120) -> None:
        from nst_shared.presence import live_workers

        def enough() -> bool:
            try:
                return len(self.call("client", lambda: live_workers(self.redis()))) >= count
            except redis.exceptions.RedisError:
                return False

        wait_until(enough, timeout_s=timeout_s, what=f"{count} live workers")

    def reconfigure(self, **settings: Any) -> None:
        """Restart the APIs and workers with `settings` unless they already run with exactly those."""
        if self.fleet_env(**settings) == self.fleet_settings:
            return
        self.stop_fleet()
        self.start_fleet(**settings)

    def stop_fleet(self) -> None:
        for name in [n for n in self.processes if n.startswith("api-") or n in WORKERS]:
            self.stop(name)
            del self.processes[name]

    def close(self) -> None:
        """Stop every process, then delete every namespace (and with them every link) of this bed."""
        for name in [n for n in self.processes if n not in ("redis", "s3")]:
            self.stop(name, timeout_s=10)
        for name in ("redis", "s3"):
            if name in self.processes:
                self.stop(name, timeout_s=10)
        for ns in _namespaces():
            if ns.startswith(f"{PREFIX}{self.run_id}-"):
                _destroy_namespace(ns)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
