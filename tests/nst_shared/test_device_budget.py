"""Workers sharing one GPU split the memory free when the first started, in one Lua script (real Redis)."""

from __future__ import annotations

import time

import pytest
import redis

from nst_shared.device_budget import DeviceBudget, DeviceMemory
from tests.conftest import next_database_url

GIB = 2**30


@pytest.fixture
def connection(redis_server):
    client = redis.Redis.from_url(next_database_url(redis_server.url))
    yield client
    client.flushdb()


def test_workers_on_one_gpu_never_count_the_same_free_memory(connection):
    # Nothing allocated yet: every worker reads 20 GB free. Without the shared pool each would plan 18 GB.
    gpu = DeviceMemory("GPU-test", 20 * GIB, 24 * GIB)
    shares = [DeviceBudget(connection, gpu, worker=f"w{i}", ttl_s=30) for i in range(3)]
    assert [s.reserve(share=2) for s in shares] == [9 * GIB, 9 * GIB, 0]  # 90% of 20 GB, in halves; none left
    shares[0].release()
    assert shares[2].reserve(share=2) == 9 * GIB  # a stopped worker's share goes to the next one
    other = DeviceBudget(connection, DeviceMemory("GPU-other", 20 * GIB, 24 * GIB), worker="w9", ttl_s=30)
    assert other.reserve(share=2) == 9 * GIB  # another GPU, another pool


def test_a_dead_workers_share_expires_and_an_empty_gpu_is_measured_again(connection):
    first = DeviceBudget(connection, DeviceMemory("GPU-test", 20 * GIB, 24 * GIB), worker="w0", ttl_s=0.2)
    assert first.reserve(share=1) == 18 * GIB
    late = DeviceBudget(connection, DeviceMemory("GPU-test", 10 * GIB, 24 * GIB), worker="w1", ttl_s=0.2)
    assert late.reserve(share=1) == 0
    first.renew()
    time.sleep(0.3)  # w0 died without a word: its share lapses with its renewals
    assert late.reserve(share=1) == 9 * GIB  # the pool measured anew: 90% of what is free now
