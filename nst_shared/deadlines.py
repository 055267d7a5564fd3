"""Job deadlines (`cancel_after`): a queued job past its deadline is canceled by the sweeper without ever reaching
a worker; a running one is stopped by its worker (worker/tasks.py), which checks the deadline every step."""

from __future__ import annotations

import logging
import time
from typing import Any

from rq import Queue

from nst_shared.job_options import DEADLINE_NOT_STARTED, deadline_of
from nst_shared.job_status import JobStatus
from nst_shared.jobs import JobRecord, JobStore
from nst_shared.keys import Keys
from nst_shared.redis_connection import text

log = logging.getLogger("nst.deadlines")


def register(pipeline: Any, job_id: str, deadline_at: float) -> None:
    """Queue on `pipeline` (the submission's transaction) the job's entry in the deadlines index."""
    pipeline.zadd(Keys.deadlines, {job_id: deadline_at})


def not_started_error(record: JobRecord) -> dict[str, str]:
    return {
        "code": DEADLINE_NOT_STARTED,
        "message": f"the job did not start within its cancel_after of {record.extra.get('cancel_after')} s",
    }


def cancel_if_not_started(store: JobStore, queue: Queue, record: JobRecord) -> bool:
    """Cancel `record` if it is still queued (its RQ entry removed too); False when it was not queued."""
    if not store.transition(record.id, JobStatus.CANCELED, allowed={JobStatus.QUEUED}, error=not_started_error(record)):
        return False
    if record.rq_job_id:
        queue.remove(record.rq_job_id)
    return True


def cancel_overdue(store: JobStore, queue: Queue, *, now: float | None = None) -> int:
    """One sweep: every queued job past its deadline is canceled; the index forgets jobs that have ended
    (a running one stays: its worker stops it, and a requeued one must still be found). Returns how many."""
    now = now if now is not None else time.time()
    canceled = 0
    for raw in store.redis.zrangebyscore(Keys.deadlines, "-inf", now):
        job_id = str(text(raw))
        record = store.get(job_id)
        if record is None or record.status.terminal:
            store.redis.zrem(Keys.deadlines, job_id)
        elif record.status is JobStatus.QUEUED and cancel_if_not_started(store, queue, record):
            store.redis.zrem(Keys.deadlines, job_id)
            canceled += 1
            log.info("job %s: canceled, its deadline passed before it started", job_id)
    return canceled


def passed(record: JobRecord, *, now: float | None = None) -> bool:
    deadline = deadline_of(record.created_at, record.extra)
    return deadline is not None and (now if now is not None else time.time()) >= deadline
