"""A thread that proves a busy worker is alive, so a job whose worker died is failed, never left running."""

from __future__ import annotations

import threading

import redis

from nst_shared.jobs import JobStore, Keys
from nst_shared.redis_outages import is_redis_outage


class Heartbeat:
    """Refreshes the job's heartbeat key every `interval_s` until stopped (use as a context manager)."""

    def __init__(self, store: JobStore, job_id: str, *, interval_s: float, ttl_s: int) -> None:
        self._store, self._job_id = store, job_id
        self._interval_s, self._ttl_s = interval_s, ttl_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        try:
            self._store.beat(self._job_id, self._ttl_s)
        except redis.exceptions.RedisError as exc:  # away or refusing writes: the thread beats again
            if not is_redis_outage(exc):
                raise
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._store.redis.delete(Keys.heartbeat(self._job_id))
        except redis.exceptions.RedisError as exc:  # it expires by itself
            if not is_redis_outage(exc):
                raise

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._store.beat(self._job_id, self._ttl_s)
            except Exception:  # Redis restarting: keep trying; the job itself decides what to do
                pass
