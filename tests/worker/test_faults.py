"""Faults with real processes: workers killed (as the OOM killer does) with retry, memory refused, time
limits, and Redis restarting with queued jobs in its append-only file. No job is left running or lost."""

from __future__ import annotations

import signal
import time

import pytest
import redis
from rq.job import Job

from nst_shared import provenance
from nst_shared.keys import Keys
from tests.conftest import RedisServer, start_stack, wait_until
from tests.service.sse import read_events
from tests.service.test_jobs import submit, wait_status

FAST_DEATH = {"heartbeat_interval_s": 0.5, "heartbeat_ttl_s": 2}


def test_lost_job_retried_once_then_worker_lost(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, engine="tests.engines:SlowEngine", retry_lost_jobs=1, **FAST_DEATH)
    try:
        with stack.client() as client:
            job = submit(client, steps="600", preview_every="0").json()
            wait_status(client, job["id"], {"running"}, timeout_s=30)
            stack.workers[0].send_signal(signal.SIGKILL)  # what the OOM killer sends
            requeued = wait_status(client, job["id"], {"queued", "failed"}, timeout_s=30)
            assert requeued["status"] == "queued" and requeued["attempts"] == 1
            stack.start_worker()
            second = wait_status(client, job["id"], {"running"}, timeout_s=30)
            assert second["attempts"] == 2
            stack.workers[1].send_signal(signal.SIGKILL)
            final = wait_status(client, job["id"], {"failed", "queued"}, timeout_s=30)
            assert final["status"] == "failed" and final["error"]["code"] == "worker_lost"
            assert final["attempts"] == 2
    finally:
        stack.stop()


def test_lost_job_retry_completes(tmp_path, redis_server):
    stack = start_stack(
        tmp_path, redis_server.url, engine="tests.engines:SlowEngine", retry_lost_jobs=1, workers=2, **FAST_DEATH
    )
    try:
        with stack.client() as client:
            job = submit(client, steps="30", preview_every="0").json()
            wait_status(client, job["id"], {"running"}, timeout_s=30)
            worker_running(stack, job["id"]).send_signal(signal.SIGKILL)
            final = wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=60)
            assert final["status"] == "succeeded" and final["attempts"] == 2
            assert client.get(f"/jobs/{job['id']}/result").status_code == 200
    finally:
        stack.stop()


def stored(stack, job_id: str) -> list[str]:
    """The job's files, without a write still in flight (storage writes to a .tmp- file, then renames it)."""
    return sorted(p.name for p in (stack.storage_dir / job_id).iterdir() if not p.name.startswith(".tmp-"))


def test_a_cut_off_worker_writes_nothing_once_its_job_moved_on(tmp_path, redis_server):
    stack = start_stack(
        tmp_path, redis_server.url, engine="tests.engines:SlowEngine", retry_lost_jobs=1, workers=2, **FAST_DEATH
    )
    connection = redis.Redis.from_url(stack.redis_url)
    try:
        with stack.client() as client:
            job = submit(client, steps="40", preview_every="1").json()
            wait_status(client, job["id"], {"running"}, timeout_s=30)
            first = worker_running(stack, job["id"])
            log = stack.log_dir / f"worker-{stack.workers.index(first)}.log"
            first.send_signal(signal.SIGSTOP)  # cut off: it neither beats nor writes, and wakes up later
            try:
                final = wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=90)
                assert final["status"] == "succeeded" and final["attempts"] == 2
                events = connection.xlen(Keys.events(job["id"]))
                fields = connection.hgetall(Keys.job(job["id"]))
                files = stored(stack, job["id"])
            finally:
                first.send_signal(signal.SIGCONT)
            # Its engine takes its next step, learns that its attempt is stale, and stops without writing.
            wait_until(lambda: "attempt 1 is no longer the job's" in log.read_text(), timeout_s=30, what="stale stop")
            assert connection.xlen(Keys.events(job["id"])) == events
            assert connection.hgetall(Keys.job(job["id"])) == fields
            assert stored(stack, job["id"]) == files
            assert "result-1.png" not in files and fields[b"result_file"] == b"result-2.png"
            result = client.get(f"/jobs/{job['id']}/result")
            assert provenance.read(result.content)["job"] == {"id": job["id"], "attempt": 2}
    finally:
        stack.stop()


def worker_running(stack, job_id: str):
    """The worker process running `job_id`, found through RQ's registry of workers and their pids."""
    import redis
    from rq import Worker

    pids = {
        w.pid
        for w in Worker.all(connection=redis.Redis.from_url(stack.redis_url))
        if (w.get_current_job_id() or "").startswith(job_id)
    }
    return next(p for p in stack.workers if p.pid in pids)


def test_out_of_memory_fails_job_and_worker_lives(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, engine="tests.engines:MemoryHogEngine")
    try:
        with stack.client() as client:
            first, second = submit(client).json(), submit(client).json()
            for job in (first, second):
                final = wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=30)
                assert final["error"]["code"] == "out_of_memory" and "max_size" in final["error"]["message"]
            assert stack.workers[0].poll() is None
            assert client.get("/readyz").json()["workers"] == 1
    finally:
        stack.stop()


def test_job_over_timeout_fails_timeout(tmp_path, redis_server):
    stack = start_stack(
        tmp_path,
        redis_server.url,
        engine="tests.engines:SlowEngine",
        job_timeout_base_s=2,
        job_timeout_per_mpx_step_s=0,
    )
    try:
        with stack.client() as client:
            slow = submit(client, steps="200", preview_every="0").json()  # 20 s of work, 2 s allowed
            final = wait_status(client, slow["id"], {"succeeded", "failed"}, timeout_s=30)
            assert final["error"]["code"] == "timeout" and final["progress"]["step"] < 200
            quick = submit(client, steps="5").json()  # the worker goes on with the next job
            assert wait_status(client, quick["id"], {"succeeded", "failed"}, timeout_s=30)["status"] == "succeeded"
    finally:
        stack.stop()


def test_queued_jobs_survive_redis_restart(tmp_path):
    own = RedisServer(tmp_path / "redis")  # append-only file on
    stack = start_stack(tmp_path, own.url, workers=0, engine="tests.engines:InstantEngine")
    try:
        with stack.client() as client:
            jobs = [submit(client).json() for _ in range(3)]
            with client.stream("GET", f"/jobs/{jobs[0]['id']}/events") as stream:
                lines = stream.iter_lines()
                assert next(line for line in lines if line.startswith("event:")) == "event: snapshot"
                own.stop()
                rest = list(lines)  # the stream ends cleanly when Redis goes (no broken response)
            assert not any(line.startswith("event: completed") for line in rest)
            assert client.get(f"/jobs/{jobs[0]['id']}").status_code == 503
            own.start()
            wait_until(
                lambda: client.get(f"/jobs/{jobs[0]['id']}").status_code == 200,
                timeout_s=20,
                what="the API reconnecting",
            )
            assert all(client.get(f"/jobs/{j['id']}").json()["status"] == "queued" for j in jobs)
            stack.start_worker()
            for job in jobs:
                assert wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=60)["status"] == "succeeded"
    finally:
        stack.stop()
        own.stop()


@pytest.mark.parametrize("steps", [150, 40], ids=["ends-after-the-outage", "ends-during-the-outage"])
def test_running_job_rides_out_a_redis_restart(tmp_path, steps):
    own = RedisServer(tmp_path / "redis")  # append-only file on
    stack = start_stack(tmp_path, own.url, engine="tests.engines:SlowEngine", **FAST_DEATH)
    try:
        with stack.client() as client:
            job = submit(client, steps=str(steps), preview_every="10").json()  # 0.1 s a step
            with client.stream("GET", f"/jobs/{job['id']}/events") as stream:
                seen = next(event for event in read_events(stream) if event[1] == "progress" and event[2]["step"] >= 10)
            own.kill()
            time.sleep(FAST_DEATH["heartbeat_ttl_s"] + 2)  # its heartbeat key expires meanwhile
            own.start()
            final = wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=60)
            assert final["status"] == "succeeded", final["error"]
            assert final["attempts"] == 1 and final["progress"]["step"] == steps
            with client.stream("GET", f"/jobs/{job['id']}/events", headers={"Last-Event-ID": seen[0]}) as stream:
                events = list(read_events(stream))
            done = [data["step"] for _, kind, data in events if kind == "progress"]
            assert done[0] > seen[2]["step"] and done[-1] == steps and done == sorted(done)
            assert events[-1][1] == "completed" and events[-1][2]["status"] == "succeeded"
            assert client.get("/readyz").json()["workers"] == 1  # the worker lived on, and counts once
            assert stack.workers[0].poll() is None
            rq_job = Job.fetch(final["id"], connection=redis.Redis.from_url(stack.redis_url))
            assert rq_job.get_status() == "finished"  # RQ's own writes after the job survived too
    finally:
        stack.stop()
        own.stop()
