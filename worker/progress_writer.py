"""A running job's progress and preview events, written to its record so that a Redis outage costs the job
nothing: while Redis is away only the latest event of each kind is kept, and written when it answers."""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from nst_shared.jobs import JobStore, StopRequest
from nst_shared.redis_outages import REDIS_DOWN, is_redis_outage

log = logging.getLogger(__name__)


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
        except redis.exceptions.RedisError as exc:
            if not is_redis_outage(exc):
                raise
            self._down_until = time.monotonic() + self._retry_s
            return Written.REDIS_DOWN

    def flush(self) -> Written:
        """Write what is pending now; Redis's outages are raised (what failed stays pending)."""
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


class BackgroundWriter:
    """A `ProgressWriter` on a thread of its own, so that a GPU step of a few milliseconds never waits on Redis.

    The engine's callback posts events (the latest of each kind replaces one not yet written: the order of
    kinds is kept, progress before preview) and reads `stop`, which this thread sets from the writes' answers
    and from the stop flags, read after each write and at least every `poll_s`. `close` writes what is posted
    and ends the thread; the caller then flushes what Redis missed, before its final event."""

    def __init__(self, writer: ProgressWriter, *, poll_s: float = 0.1) -> None:
        self._writer, self._poll_s = writer, poll_s
        self._posted: dict[str, tuple[dict[str, Any], dict[str, Any], Callable[[], bool] | None]] = {}
        self._changed = threading.Condition()
        self._closing = False
        self.stop: str | None = None  # "gone", or a StopRequest's value: set once, read by the engine's callback
        self._thread = threading.Thread(target=self._run, name="progress-writer", daemon=True)
        self._thread.start()

    def post(self, kind: str, data: dict[str, Any], *, store: Callable[[], bool] | None = None, **fields: Any) -> None:
        """Post an event; `store` (a preview's file) runs on this thread just before it, and only while the
        attempt is still the job's: a stale attempt writes no file, and an event never names a file not stored."""
        with self._changed:
            self._posted[kind] = (data, fields, store)
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join()

    def _run(self) -> None:
        polled = 0.0
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._posted or self._closing, timeout=self._poll_s)
                posted, self._posted, closing = self._posted, {}, self._closing
            try:
                written = self._write(posted)
                if closing:
                    return
                if self.stop is None and (written is Written.YES or time.monotonic() - polled >= self._poll_s):
                    polled = time.monotonic()
                    if (request := self._writer.stop_requested()) is not None:
                        self.stop = request.value
            except Exception:  # an unexpected answer must not end the writing: log it, go on with the next events
                log.exception("writing progress failed")
                if closing:
                    return

    def _write(
        self, posted: dict[str, tuple[dict[str, Any], dict[str, Any], Callable[[], bool] | None]]
    ) -> Written | None:
        written = None
        for kind in ("progress", "preview"):
            if kind in posted and self.stop != "gone":  # a canceled run's last progress is still written
                data, fields, store = posted[kind]
                if store is not None and not store():
                    continue
                written = self._writer.write(kind, data, **fields)
                if written is Written.NOT_RUNNING:
                    self.stop = "gone"  # deleted, or failed or requeued by a sweeper: not ours any more
        return written
