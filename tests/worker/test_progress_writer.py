"""The progress writer's thread: the engine posts and never waits on Redis; events keep their order and the
attempt's fencing; cancel, finish and a lost record reach the engine as `stop`."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from nst_shared.jobs import JobStore, new_job_id, parse_events
from nst_shared.keys import Keys
from tests.conftest import next_database_url
from worker.progress_writer import BackgroundWriter, ProgressWriter, Written


@pytest.fixture
def store(redis_server):
    client = redis.Redis.from_url(next_database_url(redis_server.url))
    yield JobStore(client, ttl_s=60)
    client.flushdb()


class SlowRedisWriter(ProgressWriter):
    """Each write takes 50 ms, as round trips to a far Redis would; the thread holds no lock while it waits."""

    def write(self, kind, data, **fields) -> Written:
        time.sleep(0.05)
        return super().write(kind, data, **fields)


def running_job(store: JobStore) -> tuple[str, int]:
    job_id = new_job_id()
    store.create(job_id, params={"steps": 100}, styles=1)
    attempt = store.start(job_id, heartbeat_ttl_s=30)
    assert attempt is not None
    return job_id, attempt


def all_events(store: JobStore, job_id: str) -> list[tuple[str, str, dict]]:
    return parse_events(store.redis.xread({Keys.events(job_id): "0"}))


def progress_steps(store: JobStore, job_id: str) -> list[int]:
    return [data["step"] for _, kind, data in all_events(store, job_id) if kind == "progress"]


def test_posting_never_waits_and_the_last_event_lands_in_order(store):
    job_id, attempt = running_job(store)
    background = BackgroundWriter(SlowRedisWriter(store, job_id, attempt=attempt), poll_s=0.05)
    started = time.monotonic()
    for step in range(1, 41):
        background.post("progress", {"step": step}, progress={"step": step})
        if step % 10 == 0:
            background.post("preview", {"step": step}, preview_step=step)
    posting_s = time.monotonic() - started
    background.close()
    assert posting_s < 0.05 * 40 / 4  # 40 writes at 50 ms would take 2 s on the engine's thread
    steps = progress_steps(store, job_id)
    assert steps == sorted(steps) and steps[-1] == 40  # older ones skipped while a write was under way
    kinds = [(kind, data["step"]) for _, kind, data in all_events(store, job_id) if kind != "status"]
    assert kinds[-2:] == [("progress", 40), ("preview", 40)]  # progress before preview, as posted
    record = store.get(job_id)
    assert record is not None and record.progress["step"] == 40 and background.stop is None


@pytest.mark.parametrize("request_stop", ["request_cancel", "request_finish"])
def test_a_stop_request_reaches_the_engine_without_a_write(store, request_stop):
    job_id, attempt = running_job(store)
    background = BackgroundWriter(ProgressWriter(store, job_id, attempt=attempt), poll_s=0.05)
    try:
        background.post("progress", {"step": 1}, progress={"step": 1})
        getattr(store, request_stop)(job_id)
        deadline = time.monotonic() + 10
        while background.stop is None and time.monotonic() < deadline:  # polled every 50 ms, no new posts
            time.sleep(0.01)
        assert background.stop == request_stop.removeprefix("request_")
        background.post("progress", {"step": 2}, progress={"step": 2})  # the step that saw it: still written
    finally:
        background.close()
    assert progress_steps(store, job_id)[-1] == 2


def test_a_later_attempts_record_stops_the_writes_of_the_earlier(store):
    job_id, attempt = running_job(store)
    background = BackgroundWriter(ProgressWriter(store, job_id, attempt=attempt + 1), poll_s=0.05)
    background.post("progress", {"step": 1}, progress={"step": 1})
    background.close()
    assert background.stop == "gone" and progress_steps(store, job_id) == []


def test_close_returns_while_redis_is_away(store):
    job_id, attempt = running_job(store)
    away = JobStore(redis.Redis(port=1, socket_connect_timeout=1), ttl_s=60)  # nothing listens on port 1
    writer = ProgressWriter(away, job_id, attempt=attempt)
    background = BackgroundWriter(writer, poll_s=0.05)
    background.post("progress", {"step": 1}, progress={"step": 1})
    closing = threading.Thread(target=background.close)
    closing.start()
    closing.join(10)
    assert not closing.is_alive() and background.stop is None
