"""`nst up` keeps its whole stack running: each child killed (SIGKILL) comes back by itself, the embedded Redis
on its port and append-only file, and a job running meanwhile rides out the Redis restart (issue 18)."""

from __future__ import annotations

from tests.cli.stack import NstUp, spawned_children
from tests.conftest import answers_ok, wait_until
from tests.service.test_jobs import submit, wait_status


def test_nst_up_restarts_every_child_and_a_running_job_rides_out_its_redis(tmp_path):
    up = NstUp(
        tmp_path,
        workers=2,
        engine="tests.engines:SlowEngine",
        heartbeat_interval_s=0.5,
        heartbeat_ttl_s=2,
        reaper_interval_s=1,
    )
    try:
        with up.client() as client:
            running = submit(client, steps="120", preview_every="0").json()  # 12 s of painting
            wait_status(client, running["id"], {"running"}, timeout_s=60)
            queued = [submit(client, steps="30", preview_every="0").json() for _ in range(3)]

            killed = up.kill("redis")
            wait_until(
                lambda: up.children()["redis"] and up.children()["redis"] != [killed],
                timeout_s=30,
                what="Redis restarted",
            )
            for job in (running, *queued):  # the queued jobs were in its append-only file
                final = wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=120)
                assert final["status"] == "succeeded", final["error"]
            assert client.get(f"/jobs/{running['id']}").json()["attempts"] == 1  # never worker_lost

            up.kill("api")
            wait_until(lambda: answers_ok(f"{up.url}/healthz"), timeout_s=60, what="the API restarted")
            killed = up.kill("worker")
            wait_until(
                lambda: len(up.children()["worker"]) == 2 and killed not in up.children()["worker"],
                timeout_s=30,
                what="a new worker",
            )
            wait_until(
                lambda: client.get("/readyz").json().get("workers") == 2,
                timeout_s=120,
                what="the worker pool full again",
            )
            assert wait_status(client, submit(client).json()["id"], {"succeeded"})["status"] == "succeeded"
        log = up.log()
        assert "Redis restarted" in log and "API restarted" in log and "worker 1 restarted" in log, log
    finally:
        assert up.stop() == 0
    assert up.children() == {"redis": [], "api": [], "worker": []}


def test_nst_up_api_workers_serve_from_several_processes(tmp_path):
    up = NstUp(tmp_path, workers=1, api_workers=2, engine="tests.engines:InstantEngine")
    try:
        [api] = up.children()["api"]
        wait_until(lambda: len(spawned_children(api)) == 2, timeout_s=60, what="two API processes")
        with up.client() as client:
            jobs = [submit(client).json()["id"] for _ in range(4)]
            for job_id in jobs:
                assert wait_status(client, job_id, {"succeeded", "failed"})["status"] == "succeeded"
    finally:
        assert up.stop() == 0
    assert up.children() == {"redis": [], "api": [], "worker": []} and spawned_children(api) == []
