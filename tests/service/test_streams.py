"""Event streams under stress: a long quiet wait in the queue, and many streams at once."""

from __future__ import annotations

import time

import httpx

from tests.conftest import start_stack
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


def test_more_streams_than_redis_connections_end_cleanly(tmp_path, redis_server):
    # With 4 Redis connections and 8 streams, some streams cannot get one: they end cleanly (the client
    # reconnects), other requests answer 503 JSON, and the API stays up.
    stack = start_stack(tmp_path, redis_server.url, workers=0, sse_keepalive_s=2, redis_max_connections=4)
    try:
        with stack.client() as client:
            job = submit(client).json()

            streams = [httpx.Client(base_url=stack.url, timeout=30) for _ in range(8)]
            opened = [s.send(s.build_request("GET", f"/jobs/{job['id']}/events"), stream=True) for s in streams]
            statuses = {r.status_code for r in opened}
            assert statuses <= {200, 503}
            for response, own in zip(opened, streams):
                response.close()
                own.close()
            assert client.get("/healthz").status_code == 200
            time.sleep(3)
            assert client.get(f"/jobs/{job['id']}").status_code == 200
    finally:
        stack.stop()
