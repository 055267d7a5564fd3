"""Cancelling and deleting one job: what `POST /jobs/{id}/cancel` and `DELETE /jobs/{id}` do, and a sweep does to
each of its cells."""

from __future__ import annotations

from rq import Queue

from nst_shared.job_status import JobStatus
from nst_shared.jobs import JobRecord, JobStore
from nst_shared.storage import Storage


def cancel(store: JobStore, queue: Queue, record: JobRecord) -> bool:
    """Queued: canceled at once (and off the queue); running: asked to stop within one iteration. False when
    the job had already ended."""
    queued = {JobStatus.QUEUED}
    if record.status is JobStatus.QUEUED and store.transition(record.id, JobStatus.CANCELED, allowed=queued):
        if record.rq_job_id:
            queue.remove(record.rq_job_id)
        return True
    current = store.get(record.id)
    if current is None or current.status.terminal:
        return False
    store.request_cancel(record.id)
    return True


def delete(store: JobStore, storage: Storage, queue: Queue, record: JobRecord) -> None:
    """The job and its files go; a running one is stopped first (its worker finds the record gone)."""
    if record.status is JobStatus.QUEUED:
        store.transition(record.id, JobStatus.CANCELED, allowed={JobStatus.QUEUED})
        if record.rq_job_id:
            queue.remove(record.rq_job_id)
    elif record.status is JobStatus.RUNNING:
        store.request_cancel(record.id)
    store.delete(record.id)
    storage.delete_job(record.id)
