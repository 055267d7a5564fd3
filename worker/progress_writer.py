"""A running job's progress and preview events, written to its record so that a Redis outage costs the job
nothing: while Redis is away only the latest event of each kind is kept, and written when it answers."""

from __future__ import annotations

import enum
import time
from typing import Any

from nst_shared.jobs import JobStore, StopRequest
from worker.outage import REDIS_DOWN


class Written(enum.Enum):
    YES = "yes"
    NOT_RUNNING = "not_running"  # the record is gone, no longer running, or run by another attempt: not ours
    REDIS_DOWN = "redis_down"  # kept for later


class ProgressWriter:
    """Writes `progress` and `preview` events of one attempt of a job (events kept while Redis is away go
    first); the attempt's number fences them: once another attempt runs the job, nothing is written."""

    def __init__(self, store: JobStore, job_id: str, *, attempt: int, retry_s: float = 1.0) -> None:
        self._store, self._job_id, self._attempt = store, job_id, attempt
        self._pending: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # kind -> (event data, fields)
        # While Redis is away, try again only every `retry_s`: a step must not wait on a slow connect.
        self._retry_s = retry_s
        self._down_until = 0.0

    def write(self, kind: str, data: dict[str, Any], **fields: Any) -> Written:
        self._pending[kind] = (data, fields)  # replaces an older one of its kind that Redis never got
        if time.monotonic() < self._down_until:
            return Written.REDIS_DOWN
        try:
            return self.flush()
        except REDIS_DOWN:
            self._down_until = time.monotonic() + self._retry_s
            return Written.REDIS_DOWN

    def flush(self) -> Written:
        """Write what is pending now; Redis's connection errors are raised (what failed stays pending)."""
        for kind in ("progress", "preview"):
            if kind in self._pending:
                data, fields = self._pending[kind]
                running = self._store.running_event(self._job_id, kind, data, attempt=self._attempt, **fields)
                del self._pending[kind]
                if not running:
                    return Written.NOT_RUNNING
        self._down_until = 0.0
        return Written.YES

    def stop_requested(self) -> StopRequest | None:
        """A client's cancel or finish request; None while Redis is away (it is read again at the next step)."""
        try:
            return self._store.stop_requested(self._job_id)
        except REDIS_DOWN:
            return None
