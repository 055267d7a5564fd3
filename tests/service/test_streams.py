"""Event streams under stress: a long quiet wait in the queue, and many streams at once."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import redis
import uvicorn

from nst_shared.jobs import JobStore
from nst_shared.settings import Settings
from service.app import create_app
from tests.conftest import free_port, next_database_url, start_stack, wait_until
from tests.service.sse import read_events
from tests.service.test_jobs import submit


def test_event_stream_survives_quiet_queue(tmp_path, redis_server):
    # Nothing happens to a queued job while no worker runs: the stream must stay open with keep-alives
    # (a Redis read timeout shorter than the XREAD block used to end it after 5 s).
    stack = start_stack(tmp_path, redis_server.url, workers=0, sse_keepalive_s=6)
    try:
        with stack.client() as client:
            job = submit(client).json()
            started = time.monotonic()
            keepalives = 0
            with client.stream("GET", f"/jobs/{job['id']}/events") as stream:
                for line in stream.iter_lines():
                    keepalives += line == ": keep-alive"
                    if time.monotonic() - started > 13:
                        break
            assert keepalives >= 2 and time.monotonic() - started > 13
    finally:
        stack.stop()


def open_streams(url: str, job_id: str, count: int, headers: dict | None = None) -> list[httpx.Response]:
    """`count` event streams of one job, each on its own connection, left open."""
    opened = []
    for _ in range(count):
        own = httpx.Client(base_url=url, timeout=30, headers=headers or {})
        opened.append(own.send(own.build_request("GET", f"/jobs/{job_id}/events"), stream=True))
    return opened


def close_all(opened: list[httpx.Response]) -> None:
    for response in opened:
        response.close()


def test_streams_past_the_process_cap_are_refused_and_other_requests_go_on(tmp_path, redis_server):
    # 4 Redis connections: at most 2 open streams, so the rate limiter and the job reads keep theirs.
    stack = start_stack(
        tmp_path,
        redis_server.url,
        workers=0,
        sse_keepalive_s=2,
        redis_max_connections=4,
        rate_limit_requests_per_min=1000,
    )
    try:
        with stack.client() as client:
            job = submit(client).json()
            opened = open_streams(stack.url, job["id"], 8)
            try:
                statuses = [r.status_code for r in opened]
                assert statuses.count(200) == 2 and statuses.count(503) == 6, statuses
                refused = next(r for r in opened if r.status_code == 503)
                refused.read()
                assert refused.json()["error"]["code"] == "too_many_streams"
                assert refused.headers["Retry-After"]
                for _ in range(20):  # the limiter and the reads still find connections
                    assert client.get(f"/jobs/{job['id']}").status_code == 200
            finally:
                close_all(opened)
            # Closed streams give their places back.
            wait_until(
                lambda: (
                    close_all(again := open_streams(stack.url, job["id"], 2))
                    or all(r.status_code == 200 for r in again)
                ),
                timeout_s=30,
                what="the closed streams' places given back",
            )
    finally:
        stack.stop()


def test_streams_past_the_per_key_cap_are_429(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, workers=0, sse_keepalive_s=2, max_streams_per_key=3)
    try:
        with stack.client() as client:
            job = submit(client).json()
            opened = open_streams(stack.url, job["id"], 5)
            try:
                statuses = [r.status_code for r in opened]
                assert statuses == [200, 200, 200, 429, 429], statuses
                opened[-1].read()
                assert opened[-1].json()["error"]["code"] == "too_many_streams"
                assert opened[-1].headers["Retry-After"]
            finally:
                close_all(opened)
    finally:
        stack.stop()


class LoopWatchingRedis(redis.Redis):
    """The real client, noting every command sent from a thread that runs an event loop (which it blocks)."""

    on_loop: list[str] = []

    def execute_command(self, *args, **options):
        try:
            asyncio.get_running_loop()
            self.on_loop.append(str(args[0]))
        except RuntimeError:
            pass
        return super().execute_command(*args, **options)


def test_api_never_blocks_its_event_loop_on_redis(tmp_path, redis_server):
    settings = Settings(
        redis_url=next_database_url(redis_server.url),
        storage_dir=tmp_path / "storage",
        rate_limit_requests_per_min=0,
        rate_limit_submissions_per_min=0,
        log_format="text",
    )
    app = create_app(settings)
    app.state.redis = LoopWatchingRedis.from_url(settings.redis_url)
    app.state.store = JobStore(app.state.redis, ttl_s=settings.result_ttl_s)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout_s=30, what="the API")
        with httpx.Client(base_url=f"http://127.0.0.1:{server.config.port}", timeout=30) as client:
            jobs = [submit(client).json() for _ in range(3)]  # no worker: they stay queued
            LoopWatchingRedis.on_loop.clear()
            with client.stream("GET", f"/jobs/{jobs[-1]['id']}/events") as stream:
                snapshot = next(data for _, kind, data in read_events(stream) if kind == "snapshot")
            assert snapshot["queue_position"] == 3
            assert [job["queue_position"] for job in client.get("/jobs").json()["items"]] == [3, 2, 1]
            assert client.get(f"/jobs/{jobs[0]['id']}").json()["queue_position"] == 1
        assert LoopWatchingRedis.on_loop == []
    finally:
        server.should_exit = True
        thread.join(30)
