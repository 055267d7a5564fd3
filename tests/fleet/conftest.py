"""The multi-host bed, built once for every test of tests/fleet/ and removed after them (also when one fails)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.fleet.bed import Bed, can_build, remove_leftovers

# Short enough that a cut-off test takes seconds: a worker silent for 3 s is lost, a sweeper looks every second.
FAST = {
    "engine": "tests.engines:SlowEngine",
    "heartbeat_interval_s": 0.5,
    "heartbeat_ttl_s": 3,
    "reaper_interval_s": 1,
    "retry_lost_jobs": 1,
    # A worker's waits stay below the heartbeat TTL; an S3 call behind a cut fails in about a second.
    "redis_connect_timeout_s": 1,
    "redis_socket_timeout_s": 1.5,
    "s3_connect_timeout_s": 1,
    "s3_read_timeout_s": 2,
    "s3_max_attempts": 1,
}


@pytest.fixture(scope="package")
def bed(tmp_path_factory) -> Iterator[Bed]:
    reason = can_build()
    if reason:
        pytest.skip(reason)
    remove_leftovers()
    bed = Bed(tmp_path_factory.mktemp("bed"))
    try:
        bed.build()
        bed.start(**FAST)
        yield bed
    finally:
        bed.close()


@pytest.fixture
def on_client(bed) -> Iterator[Bed]:
    """The test itself runs on the client host: every connection it opens starts there."""
    with bed.on("client"):
        yield bed


@pytest.fixture
def api(on_client) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=on_client.api_urls[0], timeout=30) as client:
        yield client


@pytest.fixture
def api2(on_client) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=on_client.api_urls[1], timeout=30) as client:
        yield client


@pytest.fixture
def store(on_client) -> redis.Redis:
    """The test's own look at Redis (from the client host)."""
    return on_client.redis()
