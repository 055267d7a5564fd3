"""One sweeper per deployment: of the processes that run a Sweeper, only the lease's holder scans storage."""

from __future__ import annotations

import pytest
import redis

from nst_shared.jobs import JobStore
from nst_shared.settings import Settings
from nst_shared.storage import LocalStorage
from nst_shared.sweeper import Sweeper
from tests.conftest import next_database_url, wait_until


class CountingStorage(LocalStorage):
    """A storage folder that counts the sweeper's scans of it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scans = 0

    def job_ids(self) -> list[str]:
        self.scans += 1
        return super().job_ids()


@pytest.fixture
def connection(redis_server):
    client = redis.Redis.from_url(next_database_url(redis_server.url))
    yield client
    client.flushdb()


def test_one_process_sweeps_at_a_time_and_another_takes_over(connection, tmp_path):
    store = JobStore(connection, ttl_s=60)
    settings = Settings(reaper_interval_s=0.2, heartbeat_ttl_s=0)  # a lease of 0.6 s
    storages = [CountingStorage(tmp_path / "storage") for _ in range(3)]  # three processes, one deployment
    sweepers = [Sweeper(store, storage, settings) for storage in storages]
    for _ in range(3):
        assert [s.sweep() for s in sweepers] == [True, False, False]
    assert [s.scans for s in storages] == [3, 0, 0]  # the storage scan does not grow with the processes
    sweepers[0].release()  # its process stops: the next round is another's
    assert [s.sweep() for s in sweepers[1:]] == [True, False]
    # That one dies without a word (no release, no more rounds): once its lease runs out, the last one sweeps.
    wait_until(lambda: sweepers[2].sweep(), timeout_s=10, what="the lease taken over")
    assert not sweepers[1].sweep()  # back after a pause: the lease is another's now
