"""The compose stack run natively, with exactly the commands and environment of docker-compose.yml plus
docker-compose.cpu.yml (this machine has no GPU and no Docker engine): only Redis's address, the port and the
volume's folder are this machine's. Two workers stand for `--scale worker=2`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, _next_db, free_port, wait_until
from tests.deploy.compose import COMPOSE, CPU_OVERRIDE, config
from tests.deploy.test_compose import environment
from tests.service.test_jobs import submit, wait_status
from tests.service.test_operations import scrape, value

SERVICES = config(COMPOSE, CPU_OVERRIDE)["services"]
BIN = Path(sys.executable).parent  # where pip puts console scripts, as on the images' PATH


def native_command(service: dict, port: int) -> list[str]:
    command = list(service["command"])
    command[0] = str(BIN / command[0])
    if "--host" in command:
        command[command.index("--host") + 1] = "127.0.0.1"  # loopback here; 0.0.0.0 inside a container
    if "--port" in command:
        command[command.index("--port") + 1] = str(port)
    return command


def native_env(service: dict, redis_url: str, storage: Path) -> dict[str, str]:
    env = environment(service)  # as Compose resolves it with nothing set in the shell
    assert env["NST_REDIS_URL"] == "redis://redis:6379/0" and env["NST_STORAGE_DIR"] == "/data/storage"
    env.update(NST_REDIS_URL=redis_url, NST_STORAGE_DIR=str(storage))  # the redis service; the named volume
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env}


def healthcheck(service: dict, port: int) -> bool:
    command = [
        str(BIN / "python") if part == "python" else part.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        for part in service["healthcheck"]["test"][1:]
    ]
    return subprocess.run(command, capture_output=True, timeout=30).returncode == 0


def test_compose_stack_runs_natively(tmp_path, redis_server):
    redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{next(_next_db)}"
    storage, port = tmp_path / "volume-storage", free_port()
    api_log, processes = tmp_path / "api.log", []
    try:
        api = subprocess.Popen(
            native_command(SERVICES["api"], port),
            cwd=ROOT,
            stderr=open(api_log, "wb"),
            env=native_env(SERVICES["api"], redis_url, storage),
        )
        processes.append(api)
        wait_until(
            lambda: healthcheck(SERVICES["api"], port),
            timeout_s=60,
            interval_s=0.5,
            what="the api service's healthcheck",
        )
        workers = [
            subprocess.Popen(
                native_command(SERVICES["worker"], port),
                cwd=ROOT,
                env=native_env(SERVICES["worker"], redis_url, storage),
                stderr=open(tmp_path / f"worker-{i}.log", "wb"),
            )
            for i in range(2)
        ]
        processes += workers
        import httpx

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_until(
                lambda: client.get("/readyz").json().get("workers") == 2, timeout_s=120, what="two workers ready"
            )
            jobs = [submit(client).json() for _ in range(2)]
            for job in jobs:
                final = wait_status(client, job["id"], {"succeeded"})
                assert final["device"] == "cpu"  # NST_DEVICE from the CPU override
                assert client.get(f"/jobs/{job['id']}/result").status_code == 200
                assert (storage / job["id"] / "result-1.png").is_file()  # in the shared volume
            samples = scrape(client)
            assert value(samples, "nst_workers") == 2
            assert value(samples, "nst_jobs_finished_total", status="succeeded") == 2

            # `docker compose stop`: SIGTERM, then SIGKILL after stop_grace_period. A running job goes back
            # to the queue and each worker exits cleanly well within the grace period.
            long_job = submit(client, steps="1000", max_size="96", preview_every="0").json()
            wait_status(client, long_job["id"], {"running"})
            stopped = time.monotonic()
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            assert [worker.wait(120) for worker in workers] == [0, 0]
            assert time.monotonic() - stopped < 60
            assert client.get(f"/jobs/{long_job['id']}").json()["status"] == "queued"
        api.send_signal(signal.SIGTERM)
        assert api.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
        lines = [json.loads(line) for line in api_log.read_text().splitlines() if line.strip()]
        assert any(line["message"].startswith("Finished server process") for line in lines)  # cleanly
        assert any(line.get("job_id") == jobs[0]["id"] and line.get("request_id") for line in lines)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
