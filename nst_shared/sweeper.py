"""Housekeeping shared by the API and the workers: retry or fail jobs whose worker died, queue again jobs that
lost their RQ job, cancel queued jobs past their deadline, drop expired ids from the indexes, delete expired
files."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rq import Queue
from rq.serializers import JSONSerializer

from nst_shared import deadlines
from nst_shared.jobs import JobStore
from nst_shared.keys import Keys
from nst_shared.lease import Lease
from nst_shared.queueing import repair_queued, requeue
from nst_shared.redis_outages import REDIS_DOWN
from nst_shared.settings import Settings
from nst_shared.storage import Storage

log = logging.getLogger("nst.sweeper")


SWEEPER_LEASE_ROUNDS = 3  # the lease outlives this many rounds: a holder that stops is replaced within them


class Sweeper:
    """One `sweep()` a round, in one process of the deployment at a time (the holder of a lease in Redis; the
    others' rounds do nothing), so the storage scan costs the same however many APIs and workers run. After
    Redis comes back (restarted: its heartbeat keys expired or lost with it;
    or out of this process's reach) nothing is failed or requeued for a grace period, so the workers that
    lived through the outage beat again first."""

    def __init__(
        self, store: JobStore, storage: Storage, settings: Settings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store, self.storage, self.settings = store, storage, settings
        self._clock = clock
        self._grace_s = settings.heartbeat_ttl_s
        self._unreachable_at: float | None = None  # when this process last failed to reach Redis
        self.queue = Queue(settings.queue_name, connection=store.redis, serializer=JSONSerializer)
        self.lease = Lease(store.redis, Keys.sweeper, ttl_s=SWEEPER_LEASE_ROUNDS * settings.reaper_interval_s)

    def release(self) -> None:
        """This process stops: another takes over the sweeping at its next round."""
        self.lease.release()

    def sweep(self, *, now: float | None = None) -> bool:
        """One round, if this process holds the lease (False when another does); a Redis error ends it (the
        next round tries again) and starts a grace period."""
        try:
            if not self.lease.hold():
                return False
            self._sweep(now if now is not None else self._clock())
            return True
        except REDIS_DOWN:
            self._unreachable_at = self._clock()
            raise

    def in_grace(self, now: float) -> bool:
        """Whether Redis came back too recently to take a missing heartbeat as a dead worker."""
        if self._unreachable_at is not None and now - self._unreachable_at < self._grace_s:
            return True
        return int(self.store.redis.info("server")["uptime_in_seconds"]) < self._grace_s

    def _sweep(self, now: float) -> None:
        if not self.in_grace(now):
            self._recover_lost_jobs()
            repair_queued(self.store, self.queue, settings=self.settings, grace_s=self.settings.queued_grace_s, now=now)
        deadlines.cancel_overdue(self.store, self.queue, now=now)
        self.store.prune_indexes(now=now)
        for job_id in self.storage.job_ids():
            if self.store.redis.exists(Keys.job(job_id), Keys.sweep(job_id)):  # a job's files, or a sweep's sheet
                continue
            # A job's files are written before its record exists: young files are left alone.
            modified_at = self.storage.modified_at(job_id)
            if modified_at is not None and now - modified_at > self.settings.orphan_grace_s:
                self.storage.delete_job(job_id)
                log.info("job %s: files deleted (expired)", job_id)

    def _recover_lost_jobs(self) -> None:
        """Lost jobs go back to the queue (up to NST_RETRY_LOST_JOBS times) or fail as worker_lost."""
        for job_id in self.store.take_lost():
            record = self.store.get(job_id)
            # Only deaths count: an attempt requeued by its stopping worker (SIGTERM) was not lost.
            if record is not None and record.lost_attempts < self.settings.retry_lost_jobs:
                rq_id = requeue(self.store, self.queue, job_id, settings=self.settings, only_if_lost=True)
                if rq_id is not None:
                    log.warning(
                        "job %s: worker lost; queued again as %s (lost %d of %d)",
                        job_id,
                        rq_id,
                        record.lost_attempts + 1,
                        self.settings.retry_lost_jobs,
                    )
                    continue
            if self.store.fail_lost(job_id):
                log.warning("job %s: worker lost", job_id)
