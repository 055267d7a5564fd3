"""Putting a job on the RQ queue, by the task's import path: for the API, a stopping worker and the sweeper."""

from __future__ import annotations

from rq import Queue

from nst_shared.jobs import JobStatus, JobStore
from nst_shared.params import TransferParams
from nst_shared.schedule import params_cost
from nst_shared.settings import Settings

TASK = "worker.tasks.run_job"  # the service never imports the worker: RQ finds the task by this path


def job_timeout_s(settings: Settings, params: TransferParams) -> int:
    """A job's time limit: a fixed part, plus a part growing with the cost of its schedule (steps x megapixels
    over its scales, nst_shared/schedule.py; CPU scale), for a square picture (the most pixels)."""
    return int(settings.job_timeout_base_s + params_cost(params) * settings.job_timeout_per_mpx_step_s)


def enqueue_job(queue: Queue, job_id: str, *, settings: Settings, params: dict, attempt: int = 0,
                at_front: bool = False) -> str:
    """Queue job `job_id` (its `attempt`-th retry when > 0, under a fresh RQ id); returns the RQ job id."""
    rq_id = f"{job_id}-{attempt}" if attempt else job_id
    queue.enqueue_call(TASK, args=(job_id,), job_id=rq_id,
                       timeout=job_timeout_s(settings, TransferParams.from_dict(params)),
                       result_ttl=settings.result_ttl_s, failure_ttl=settings.result_ttl_s, at_front=at_front)
    return rq_id


def requeue(store: JobStore, queue: Queue, job_id: str, *, settings: Settings,
            only_if_lost: bool = False) -> str | None:
    """Put a running job back at the front of the queue (its worker stops, or died: `only_if_lost`); None
    when it was not running any more. Its next attempt runs under a fresh RQ id."""
    if not store.transition(job_id, JobStatus.QUEUED, allowed={JobStatus.RUNNING}, only_if_lost=only_if_lost,
                            progress=None):
        return None
    record = store.get(job_id)
    if record is None:
        return None
    rq_id = enqueue_job(queue, job_id, settings=settings, params=record.params, attempt=max(record.attempts, 1),
                        at_front=True)
    store.set_fields(job_id, rq_job_id=rq_id)
    return rq_id
