"""Housekeeping shared by the API and the workers: retry or fail jobs whose worker died, delete expired files."""

from __future__ import annotations

import logging
import time

from rq import Queue
from rq.serializers import JSONSerializer

from nst_shared.jobs import JobStore, Keys
from nst_shared.queueing import requeue
from nst_shared.settings import Settings
from nst_shared.storage import Storage

log = logging.getLogger("nst.sweeper")


def sweep(store: JobStore, storage: Storage, settings: Settings, *, now: float | None = None) -> None:
    """One round: lost jobs go back to the queue (up to NST_RETRY_LOST_JOBS times) or fail as worker_lost;
    folders of expired or deleted jobs go."""
    queue = Queue(settings.queue_name, connection=store.redis, serializer=JSONSerializer)
    for job_id in store.lost():
        record = store.get(job_id)
        if record is not None and record.attempts <= settings.retry_lost_jobs:
            rq_id = requeue(store, queue, job_id, settings=settings, only_if_lost=True)
            if rq_id is not None:
                log.warning("job %s: worker lost; queued again as %s (attempt %d)", job_id, rq_id,
                            record.attempts + 1)
                continue
        if store.fail_lost(job_id):
            log.warning("job %s: worker lost", job_id)
    current = now if now is not None else time.time()
    for job_id in storage.job_ids():
        if store.redis.exists(Keys.job(job_id)):
            continue
        # A job's files are written before its record exists: young files are left alone.
        modified_at = storage.modified_at(job_id)
        if modified_at is not None and current - modified_at > settings.orphan_grace_s:
            storage.delete_job(job_id)
            log.info("job %s: files deleted (expired)", job_id)
