"""Workers as real processes: lost workers, SIGTERM, sharing a queue, result expiry."""

from __future__ import annotations

import signal
import time

from tests.conftest import start_stack, wait_until
from tests.service.test_jobs import submit, wait_status

LONG = {"steps": "1000", "max_size": "96", "preview_every": "0"}


def test_killed_worker_fails_job_worker_lost(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, heartbeat_interval_s=1, heartbeat_ttl_s=3)
    try:
        with stack.client() as client:
            job = submit(client, **LONG).json()
            wait_status(client, job["id"], {"running"}, timeout_s=60)
            stack.workers[0].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            final = wait_status(client, job["id"], {"failed"}, timeout_s=60)
            assert final["error"]["code"] == "worker_lost"
            assert time.monotonic() - killed < 60
    finally:
        stack.stop()


def test_sigterm_requeues_running_job(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url)
    try:
        with stack.client() as client:
            # 150 steps: long enough to be stopped mid-run, short enough for its time limit on a busy CPU.
            job = submit(client, steps="150", max_size="96", preview_every="0").json()
            wait_status(client, job["id"], {"running"}, timeout_s=60)
            stack.workers[0].send_signal(signal.SIGTERM)
            assert stack.workers[0].wait(30) == 0
            assert client.get(f"/jobs/{job['id']}").json()["status"] == "queued"
            stack.start_worker()  # another worker takes it over from the start
            final = wait_status(client, job["id"], {"succeeded"}, timeout_s=300)
            assert final["attempts"] == 2
    finally:
        stack.stop()


def test_two_workers_share_a_queue(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, workers=2)
    try:
        with stack.client() as client:
            jobs = [submit(client, **LONG).json() for _ in range(2)]
            wait_until(lambda: all(client.get(f"/jobs/{j['id']}").json()["status"] == "running" for j in jobs),
                       timeout_s=60, what="both jobs running at once")
            for job in jobs:
                client.post(f"/jobs/{job['id']}/cancel")
            for job in jobs:
                wait_status(client, job["id"], {"canceled"})
    finally:
        stack.stop()


def test_results_expire_with_their_files(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, result_ttl_s=2, orphan_grace_s=0)
    try:
        with stack.client() as client:
            job = submit(client).json()
            wait_status(client, job["id"], {"succeeded"})
            assert (stack.storage_dir / job["id"] / "result.png").is_file()
            wait_until(lambda: client.get(f"/jobs/{job['id']}").status_code == 404, timeout_s=15,
                       what="the job record expiring")
            wait_until(lambda: not (stack.storage_dir / job["id"]).exists(), timeout_s=15,
                       what="the job's files being deleted")
    finally:
        stack.stop()
