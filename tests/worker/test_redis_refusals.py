"""Redis refusing writes (at maxmemory: OOM; out of disk with AOF: MISCONF) is an outage to wait out: a running
job goes on when writes are taken again, and the API answers 503, not 500."""

from __future__ import annotations

import time

import pytest

from tests.conftest import RedisServer, start_stack, wait_until
from tests.service.test_jobs import submit, wait_status


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test's own: its maxmemory is changed."""
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


def test_a_running_job_rides_out_redis_refusing_writes(tmp_path, own_redis):
    stack = start_stack(tmp_path, own_redis.url, engine="tests.engines:SlowEngine", heartbeat_ttl_s=60)
    admin = own_redis.client()
    try:
        with stack.client() as client:
            job = submit(client, steps="40", max_size="64", preview_every="0").json()
            wait_until(
                lambda: (client.get(f"/jobs/{job['id']}").json().get("progress") or {}).get("step", 0) >= 2,
                timeout_s=60,
                what="the job making progress",
            )
            admin.config_set("maxmemory", "1")  # every write that could grow memory is refused: OOM
            try:
                refused = submit(client)
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"]["code"] == "redis_unavailable" and refused.headers["Retry-After"]
                assert client.get(f"/jobs/{job['id']}").status_code == 200  # reads go on
                time.sleep(2)  # the outage's length (not a wait for an event): the engine goes on, its progress waits
            finally:
                admin.config_set("maxmemory", "0")
            final = wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=120)
            assert final["status"] == "succeeded", final
            assert final["progress"]["step"] == 40
            assert stack.workers[0].poll() is None  # the worker lives on
    finally:
        stack.stop()


def test_a_job_whose_writes_are_refused_past_its_time_limit_fails_with_its_own_code(tmp_path, own_redis):
    stack = start_stack(
        tmp_path,
        own_redis.url,
        engine="tests.engines:SlowEngine",
        heartbeat_ttl_s=60,
        job_timeout_base_s=3,
        job_timeout_per_mpx_step_s=0,
    )
    admin = own_redis.client()
    try:
        with stack.client() as client:
            job = submit(client, steps="100", max_size="64", preview_every="0").json()
            wait_status(client, job["id"], {"running"}, timeout_s=60)
            admin.config_set("maxmemory", "1")
            try:
                time.sleep(5)  # past the job's 3 s: its end cannot be written while Redis refuses
                assert client.get(f"/jobs/{job['id']}").json()["status"] == "running"
            finally:
                admin.config_set("maxmemory", "0")
            final = wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=60)
            assert final["error"]["code"] == "store_refused_writes", final  # not left running with no worker
    finally:
        stack.stop()
