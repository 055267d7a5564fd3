"""Workers as real processes: lost workers, SIGTERM, sharing a queue, result expiry."""

from __future__ import annotations

import signal
import time

from tests.conftest import start_stack, wait_until
from tests.deploy.kubernetes import OVERLAYS, pod_specs, render
from tests.service.test_jobs import submit, wait_status

LONG = {"steps": "1000", "max_size": "96", "preview_every": "0"}
SLOW = "tests.engines:SlowEngine"  # 0.1 s a step: these tests are of the worker processes, not of the painting


def test_killed_worker_fails_job_worker_lost(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, engine=SLOW, heartbeat_interval_s=1, heartbeat_ttl_s=3)
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
    # The fake engine's steps take 0.1 s whatever else the machine runs; the signal handling is the subject.
    stack = start_stack(tmp_path, redis_server.url, engine="tests.engines:SlowEngine")
    try:
        with stack.client() as client:
            job = submit(client, steps="100", max_size="96", preview_every="0").json()
            wait_status(client, job["id"], {"running"}, timeout_s=60)
            stack.workers[0].send_signal(signal.SIGTERM)
            assert stack.workers[0].wait(30) == 0
            assert client.get(f"/jobs/{job['id']}").json()["status"] == "queued"
            stack.start_worker()  # another worker takes it over from the start
            final = wait_status(client, job["id"], {"succeeded"}, timeout_s=120)
            assert final["attempts"] == 2 and final["progress"]["step"] == 100
    finally:
        stack.stop()


def test_scaled_down_worker_hands_its_job_to_another_within_the_grace_period(tmp_path, redis_server):
    """What a KEDA scale-down (or a node drain) does to a busy worker pod: SIGTERM, and SIGKILL once the grace
    period deploy/kubernetes sets is over. The worker requeues its job and exits well inside it, and a worker
    still alive paints that job to the end."""
    grace_s = min(pod_specs(render(overlay))["nst-worker"]["terminationGracePeriodSeconds"] for overlay in OVERLAYS)
    stack = start_stack(tmp_path, redis_server.url, workers=2, engine="tests.engines:SlowEngine")
    try:
        with stack.client() as client:
            jobs = [submit(client, steps="40", max_size="96", preview_every="0").json() for _ in range(2)]
            wait_until(
                lambda: all(client.get(f"/jobs/{j['id']}").json()["status"] == "running" for j in jobs),
                timeout_s=60,
                what="both workers busy",
            )
            stack.workers[0].send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            assert stack.workers[0].wait(grace_s) == 0  # past the grace period Kubernetes would SIGKILL it
            stopped_s = time.monotonic() - signalled
            finals = [wait_status(client, j["id"], {"succeeded"}, timeout_s=120) for j in jobs]
            assert sorted(f["attempts"] for f in finals) == [1, 2]  # one job was handed over, none was lost
            assert all(f["progress"]["step"] == 40 for f in finals)
            assert stack.workers[1].poll() is None  # the worker left alive painted both
            assert stopped_s < grace_s / 4, stopped_s  # a 0.1 s step: far inside the grace period
    finally:
        stack.stop()


def test_two_workers_share_a_queue(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, workers=2, engine=SLOW)
    try:
        with stack.client() as client:
            jobs = [submit(client, **LONG).json() for _ in range(2)]
            wait_until(
                lambda: all(client.get(f"/jobs/{j['id']}").json()["status"] == "running" for j in jobs),
                timeout_s=60,
                what="both jobs running at once",
            )
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
            assert (stack.storage_dir / job["id"] / "result-1.png").is_file()
            wait_until(
                lambda: client.get(f"/jobs/{job['id']}").status_code == 404,
                timeout_s=15,
                what="the job record expiring",
            )
            wait_until(
                lambda: not (stack.storage_dir / job["id"]).exists(), timeout_s=15, what="the job's files being deleted"
            )
    finally:
        stack.stop()


def test_deleting_a_running_job_leaves_no_files(tmp_path, redis_server):
    # Every step writes a preview: the worker goes on writing after the API deleted the job's folder.
    stack = start_stack(tmp_path, redis_server.url, engine="tests.engines:SlowEngine")
    try:
        with stack.client() as client:
            job = submit(client, steps="300", preview_every="1").json()
            wait_until(
                lambda: (stack.storage_dir / job["id"] / "preview-1.webp").is_file(), timeout_s=60, what="a preview"
            )
            assert client.delete(f"/jobs/{job['id']}").status_code == 200
            quick = submit(client, steps="2").json()  # the worker is free again once it has cleaned up
            wait_status(client, quick["id"], {"succeeded"}, timeout_s=60)
            assert not (stack.storage_dir / job["id"]).exists()
    finally:
        stack.stop()


def test_readiness_counts_live_workers_only(tmp_path, redis_server):
    stack = start_stack(
        tmp_path,
        redis_server.url,
        workers=2,
        engine="tests.engines:InstantEngine",
        heartbeat_interval_s=0.5,
        heartbeat_ttl_s=2,
    )
    try:
        with stack.client() as client:
            assert client.get("/readyz").json()["workers"] == 2
            stack.workers[0].send_signal(signal.SIGKILL)  # no chance to unregister
            wait_until(
                lambda: client.get("/readyz").json().get("workers") == 1,
                timeout_s=10,
                what="the killed worker to stop counting",
            )
            stack.workers[1].send_signal(signal.SIGTERM)
            stack.workers[1].wait(30)
            ready = client.get("/readyz")  # still ready: jobs wait in the queue for the next worker
            assert ready.status_code == 200 and ready.json()["workers"] == 0
    finally:
        stack.stop()
