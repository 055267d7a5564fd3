"""A thread that proves a busy worker is alive, so a job whose worker died is failed, never left running."""

from __future__ import annotations

import threading

from nst_shared.jobs import JobStore
from worker.outage import REDIS_DOWN


class Heartbeat:
    """Refreshes the heartbeat of one attempt of a job every `interval_s` until stopped (a context manager
    entered once the attempt started, which wrote its first beat). It stops beating, and sets `stale`, once
    the attempt is no longer the job's; on exit it deletes only its own attempt's beat."""

    def __init__(self, store: JobStore, job_id: str, *, attempt: int, interval_s: float, ttl_s: float) -> None:
        self._store, self._job_id, self._attempt = store, job_id, attempt
        self._interval_s, self._ttl_s = interval_s, ttl_s
        self._stop = threading.Event()
        self.stale = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._store.end_beat(self._job_id, attempt=self._attempt)
        except REDIS_DOWN:  # it expires by itself
            pass

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                if not self._store.beat(self._job_id, attempt=self._attempt, ttl_s=self._ttl_s):
                    self.stale.set()  # ended, deleted, or taken over by another attempt
                    return
            except Exception:  # Redis restarting: keep trying; the job itself decides what to do
                pass
