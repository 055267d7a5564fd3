"""Putting a job on the RQ queue, by the task's import path: for the API, a stopping worker and the sweeper.

A record's status and its RQ job change together: a requeue commits the transition and the RQ job in one
transaction (WATCH on the record, MULTI/EXEC), and the sweeper queues again the queued records that have no
RQ job waiting for them (a submission or a requeue cut short by a crash), so no record waits for nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from rq import Queue
from rq.job import Job

from nst_shared.jobs import JobRecord, JobStatus, JobStore, Keys
from nst_shared.settings import Settings

TASK = "worker.tasks.run_job"  # the service never imports the worker: RQ finds the task by this path
MAX_REPAIRS = 3  # times a queued job found without its RQ job is queued again before it fails as queue_lost
# RQ statuses of a job that a worker will still take (or is taking).
_WAITING = {"queued", "deferred", "scheduled"}

log = logging.getLogger("nst.queueing")


def job_timeout_s(settings: Settings, *, steps: int, max_size: int) -> int:
    """A job's time limit: a fixed part, plus a part growing with steps x megapixels (CPU scale)."""
    megapixels = max_size * max_size / 1e6
    return int(settings.job_timeout_base_s + steps * megapixels * settings.job_timeout_per_mpx_step_s)


def enqueue_job(queue: Queue, job_id: str, *, settings: Settings, params: dict, attempt: int = 0,
                at_front: bool = False, rq_id: str | None = None, pipeline: Any = None) -> str:
    """Queue job `job_id` (its `attempt`-th retry when > 0, under a fresh RQ id); returns the RQ job id.
    With `pipeline` (a transaction), the RQ job is written when the caller executes it."""
    rq_id = rq_id or (f"{job_id}-{attempt}" if attempt else job_id)
    queue.enqueue_call(TASK, args=(job_id,), job_id=rq_id,
                       timeout=job_timeout_s(settings, steps=params["steps"], max_size=params["max_size"]),
                       result_ttl=settings.result_ttl_s, failure_ttl=settings.result_ttl_s, at_front=at_front,
                       pipeline=pipeline)
    return rq_id


def queue_positions(queue: Queue, records: list[JobRecord]) -> dict[str, int]:
    """1-based queue positions of the queued `records`, from one read of the queue (not one LPOS each)."""
    wanted = {r.rq_job_id: r.id for r in records if r.status is JobStatus.QUEUED and r.rq_job_id}
    if not wanted:
        return {}
    return {wanted[rq_id]: i + 1 for i, rq_id in enumerate(queue.get_job_ids()) if rq_id in wanted}


def requeue(store: JobStore, queue: Queue, job_id: str, *, settings: Settings,
            only_if_lost: bool = False) -> str | None:
    """Put a running job back at the front of the queue (its worker stops, or died: `only_if_lost`); None
    when it was not running any more (or, with `only_if_lost`, its worker beats). Its next attempt runs
    under a fresh RQ id, written in the same transaction as the status."""
    with store.redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(Keys.job(job_id), Keys.heartbeat(job_id))
                status, attempts, params = (_text(v) for v in pipe.hmget(Keys.job(job_id), "status", "attempts",
                                                                         "params"))
                if status != JobStatus.RUNNING.value or (only_if_lost and pipe.exists(Keys.heartbeat(job_id))):
                    return None
                rq_id = f"{job_id}-{max(int(attempts or 0), 1)}"
                pipe.multi()
                store.transition_in(pipe, job_id, JobStatus.QUEUED, allowed={JobStatus.RUNNING}, progress=None,
                                    rq_job_id=rq_id)
                enqueue_job(queue, job_id, settings=settings, params=_json(params), rq_id=rq_id, at_front=True,
                            pipeline=pipe)
                pipe.execute()
                return rq_id
            except redis.exceptions.WatchError:
                continue


def waiting_in_rq(connection: redis.Redis, rq_id: str | None) -> bool:
    """Whether RQ still holds job `rq_id` for a worker: queued, or started by a worker that is alive."""
    if not rq_id:
        return False
    status, worker = (_text(v) for v in connection.hmget(Job.key_for(rq_id), "status", "worker_name"))
    if status in _WAITING:
        return True
    # Started: a worker took it and is about to mark the record running, unless that worker has died.
    return status == "started" and bool(worker) and bool(connection.exists(Keys.worker(worker)))


def repair_queued(store: JobStore, queue: Queue, *, settings: Settings, grace_s: float, now: float) -> int:
    """Queue again (or, after MAX_REPAIRS times, fail as queue_lost) the jobs queued for longer than
    `grace_s` that RQ holds no job for; returns how many were found."""
    found = 0
    for job_id in store.queued_since(now - grace_s):
        with store.redis.pipeline() as pipe:
            try:
                pipe.watch(Keys.job(job_id))
                status, rq_id, repairs, params = (_text(v) for v in pipe.hmget(
                    Keys.job(job_id), "status", "rq_job_id", "repairs", "params"))
                if status is None:  # deleted or expired: the index entry is stale
                    store.redis.zrem(Keys.queued, job_id)
                if status != JobStatus.QUEUED.value:
                    continue
                if waiting_in_rq(store.redis, rq_id):
                    continue
                found += 1
                count = int(repairs or 0) + 1
                pipe.multi()
                if count > MAX_REPAIRS:
                    store.transition_in(pipe, job_id, JobStatus.FAILED, allowed={JobStatus.QUEUED}, error={
                        "code": "queue_lost", "message": "the job was lost from the queue several times (Redis "
                        "restarting without its data, or a crash while it was queued)"})
                    pipe.execute()
                    log.warning("job %s: lost from the queue %d times; failed", job_id, count - 1)
                    continue
                new_rq_id = f"{job_id}-q{count}"
                pipe.hset(Keys.job(job_id), mapping={"rq_job_id": new_rq_id, "repairs": count})
                pipe.zadd(Keys.queued, {job_id: now})
                enqueue_job(queue, job_id, settings=settings, params=_json(params), rq_id=new_rq_id, pipeline=pipe)
                pipe.execute()
                log.warning("job %s: queued without an RQ job (was %s); queued again as %s", job_id, rq_id,
                            new_rq_id)
            except redis.exceptions.WatchError:  # it changed meanwhile: the next round looks again
                continue
    return found


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _json(raw: str | None) -> dict:
    return json.loads(raw) if raw else {}
