"""`nst up` as a real process for the tests: its children found through /proc, killed as the OOM killer does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT, answers_ok, free_port, wait_until


def children_of(pid: int) -> dict[str, list[int]]:
    """The live child processes of `pid` by role: redis, api, worker."""
    found: dict[str, list[int]] = {"redis": [], "api": [], "worker": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) != pid or fields[0] == "Z":  # the parent's pid; zombies are not alive
            continue
        words = [w.decode(errors="replace") for w in cmdline]
        role = (
            "redis"
            if any("redis-server" in w for w in words)
            else "api"
            if "uvicorn" in words
            else "worker"
            if "worker" in words
            else None
        )
        if role:
            found[role].append(int(entry.name))
    return found


def spawned_children(pid: int) -> list[int]:
    """The live children of `pid` started by multiprocessing's spawn (uvicorn's workers), not its helpers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


class NstUp:
    """`nst up --workers N [--api-workers M]` with NST_* overrides, its own embedded Redis and storage under
    `folder`."""

    def __init__(
        self, folder: Path, *, workers: int, api_workers: int = 1, root: Path = ROOT, **settings: object
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "nst-up.log"
        env = {k: v for k, v in os.environ.items() if k != "NST_REDIS_URL"}
        env.update(
            {
                "NST_STORAGE_DIR": str(folder / "storage"),
                "NST_DEVICE": "cpu",
                # The checkout first (another one for service_bench.py --baseline), then what was set (GPU wheels).
                "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
                "NST_RATE_LIMIT_REQUESTS_PER_MIN": "0",
                "NST_RATE_LIMIT_SUBMISSIONS_PER_MIN": "0",
                **{f"NST_{k.upper()}": str(v) for k, v in settings.items()},
            }
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nst_cli.main",
                "up",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--api-workers",
                str(api_workers),
            ],
            cwd=root,
            env=env,
            stdout=open(self.log_path, "wb"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: answers_ok(f"{self.url}/healthz"), timeout_s=60, what="nst up's API")
        # With API keys on, /readyz counts the workers only for who may read /metrics.
        token = settings.get("metrics_token")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with self.client() as client:
            wait_until(
                lambda: client.get("/readyz", headers=headers).json().get("workers") == workers,
                timeout_s=120,
                what="nst up's workers",
            )

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def children(self) -> dict[str, list[int]]:
        return children_of(self.process.pid)

    def kill(self, role: str) -> int:
        """SIGKILL one child of `role`; returns its pid."""
        pid = self.children()[role][0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
