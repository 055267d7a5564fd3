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

from nst_shared.job_status import JobStatus
from nst_shared.jobs import JobRecord, JobStore
from nst_shared.keys import Keys
from nst_shared.params import TransferParams
from nst_shared.redis_connection import text
from nst_shared.schedule import clip_cost, params_cost
from nst_shared.settings import Settings

TASK = "worker.tasks.run_job"  # the service never imports the worker: RQ finds the task by this path
MAX_REPAIRS = 3  # times a queued job found without its RQ job is queued again before it fails as queue_lost
CONFIRM_S = 1.0  # a queued job must be seen without its RQ job this long apart (two sweeps) to be repaired
_LATER = {"deferred", "scheduled"}  # RQ statuses of a job RQ will queue by itself later

log = logging.getLogger("nst.queueing")


def job_timeout_s(settings: Settings, params: TransferParams, *, frames: int = 0) -> int:
    """A job's time limit: a fixed part, plus a part growing with the cost of its schedule (steps x megapixels
    over its scales, nst_shared/schedule.py; CPU scale), for a square picture (the most pixels); a clip's
    (`frames` > 0) grows with its frames."""
    cost = clip_cost(params, frames) if frames else params_cost(params)
    return int(settings.job_timeout_base_s + cost * settings.job_timeout_per_mpx_step_s)


def clip_frames(extra: dict[str, Any] | str | None) -> int:
    """The frames of a clip's job from its record's extra (JSON or parsed); 0 for a picture."""
    if isinstance(extra, str):
        extra = json.loads(extra) if extra else None
    return int((extra or {}).get("video", {}).get("frames", 0))


def enqueue_job(
    queue: Queue,
    job_id: str,
    *,
    settings: Settings,
    params: dict[str, Any],
    attempt: int = 0,
    at_front: bool = False,
    rq_id: str | None = None,
    pipeline: Any = None,
    frames: int = 0,
) -> str:
    """Queue job `job_id` (its `attempt`-th retry when > 0, under a fresh RQ id); returns the RQ job id.
    With `pipeline` (a transaction), the RQ job is written when the caller executes it."""
    rq_id = rq_id or (f"{job_id}-{attempt}" if attempt else job_id)
    queue.enqueue_call(
        TASK,
        args=(job_id,),
        job_id=rq_id,
        timeout=job_timeout_s(settings, TransferParams.from_dict(params), frames=frames),
        result_ttl=settings.result_ttl_s,
        failure_ttl=settings.result_ttl_s,
        at_front=at_front,
        pipeline=pipeline,
    )
    return rq_id


def queue_positions(queue: Queue, records: list[JobRecord]) -> dict[str, int]:
    """1-based queue positions of the queued `records`, from one read of the queue (not one LPOS each)."""
    wanted = {r.rq_job_id: r.id for r in records if r.status is JobStatus.QUEUED and r.rq_job_id}
    if not wanted:
        return {}
    return {wanted[rq_id]: i + 1 for i, rq_id in enumerate(queue.get_job_ids()) if rq_id in wanted}


def requeue(
    store: JobStore,
    queue: Queue,
    job_id: str,
    *,
    settings: Settings,
    attempt: int | None = None,
    only_if_lost: bool = False,
) -> str | None:
    """Put a running job back at the front of the queue: its worker stops (`attempt`, the attempt it runs),
    or died (`only_if_lost`, counted in the record's `lost_attempts`). None when it was not running any more
    (or not as `attempt`; or, with `only_if_lost`, its worker beats). Its next attempt runs under a fresh RQ
    id, written in the same transaction as the status; the old attempt's preview is no longer shown."""
    with store.redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(Keys.job(job_id), Keys.heartbeat(job_id))  # type: ignore[no-untyped-call]  # redis-py leaves watch untyped
                status, attempts, lost, params, extra = (
                    text(v)
                    for v in pipe.hmget(Keys.job(job_id), "status", "attempts", "lost_attempts", "params", "extra")
                )
                if status != JobStatus.RUNNING.value or (only_if_lost and pipe.exists(Keys.heartbeat(job_id))):
                    return None
                if attempt is not None and attempts != str(attempt):
                    return None
                rq_id = f"{job_id}-{max(int(attempts or 0), 1)}"
                fields: dict[str, Any] = {"progress": None, "preview_file": None, "preview_step": None}
                if only_if_lost:
                    fields["lost_attempts"] = int(lost or 0) + 1
                pipe.multi()
                store.transition_in(
                    pipe,
                    job_id,
                    JobStatus.QUEUED,
                    allowed={JobStatus.RUNNING},
                    attempt=attempt,
                    rq_job_id=rq_id,
                    **fields,
                )
                enqueue_job(
                    queue,
                    job_id,
                    settings=settings,
                    params=_json(params),
                    rq_id=rq_id,
                    at_front=True,
                    pipeline=pipe,
                    frames=clip_frames(extra),
                )
                pipe.execute()
                return rq_id
            except redis.exceptions.WatchError:
                continue


def repair_queued(store: JobStore, queue: Queue, *, settings: Settings, grace_s: float, now: float) -> int:
    """Queue again (or, after MAX_REPAIRS times, fail as queue_lost) the jobs queued for longer than
    `grace_s` that RQ holds no job for, once seen so on two sweeps; returns how many were queued again."""
    suspects = {text(k): float(v) for k, v in store.redis.hgetall(Keys.queue_suspects).items()}
    candidates = store.queued_since(now - grace_s)
    missing = _without_rq_job(store.redis, queue, candidates) if candidates else []
    stale = set(suspects) - set(missing)
    if stale:
        store.redis.hdel(Keys.queue_suspects, *stale)
    repaired = 0
    for job_id in missing:
        # A worker moves a job from the queue to its started registry in two steps: seen between them once,
        # a job is only suspected; seen without an RQ job again a moment later, it is queued again.
        if job_id not in suspects:
            store.redis.hset(Keys.queue_suspects, job_id, repr(now))
        elif now - suspects[job_id] >= CONFIRM_S:
            repaired += _repair(store, queue, job_id, settings=settings, now=now)
            store.redis.hdel(Keys.queue_suspects, job_id)
    return repaired


def _without_rq_job(connection: redis.Redis, queue: Queue, job_ids: list[str]) -> list[str]:
    """Those of the queued `job_ids` that RQ holds no job for: not in the queue, not started by a live worker."""
    pipe = connection.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(Keys.job(job_id), "status", "rq_job_id")
    records = [(job_id, text(status), text(rq_id)) for job_id, (status, rq_id) in zip(job_ids, pipe.execute())]
    queued = [(job_id, rq_id) for job_id, status, rq_id in records if status == JobStatus.QUEUED.value]
    waiting = set(queue.get_job_ids())
    pipe = connection.pipeline(transaction=False)
    for _, rq_id in queued:
        pipe.hmget(Job.key_for(rq_id or "-"), "status", "worker_name")
    missing = []
    for (job_id, rq_id), (status, worker) in zip(queued, pipe.execute()):
        status, worker = text(status), text(worker)
        if rq_id in waiting or status in _LATER:
            continue
        if status == "started" and worker and connection.exists(Keys.worker(worker)):
            continue  # a live worker took it and is about to mark the record running
        missing.append(job_id)
    return missing


def _repair(store: JobStore, queue: Queue, job_id: str, *, settings: Settings, now: float) -> int:
    with store.redis.pipeline() as pipe:
        try:
            pipe.watch(Keys.job(job_id))  # type: ignore[no-untyped-call]  # redis-py leaves watch untyped
            status, rq_id, repairs, params, extra = (
                text(v) for v in pipe.hmget(Keys.job(job_id), "status", "rq_job_id", "repairs", "params", "extra")
            )
            if status != JobStatus.QUEUED.value:
                return 0
            count = int(repairs or 0) + 1
            pipe.multi()
            if count > MAX_REPAIRS:
                store.transition_in(
                    pipe,
                    job_id,
                    JobStatus.FAILED,
                    allowed={JobStatus.QUEUED},
                    error={
                        "code": "queue_lost",
                        "message": "the job was lost from the queue several times (Redis "
                        "restarting without its data, or a crash while it was queued)",
                    },
                )
                pipe.execute()
                log.warning("job %s: lost from the queue %d times; failed", job_id, count - 1)
                return 0
            new_rq_id = f"{job_id}-q{count}"
            pipe.hset(Keys.job(job_id), mapping={"rq_job_id": new_rq_id, "repairs": count})
            pipe.zadd(Keys.queued, {job_id: now})
            enqueue_job(
                queue,
                job_id,
                settings=settings,
                params=_json(params),
                rq_id=new_rq_id,
                pipeline=pipe,
                frames=clip_frames(extra),
            )
            pipe.execute()
        except redis.exceptions.WatchError:  # it changed meanwhile: the next round looks again
            return 0
    log.warning("job %s: queued without an RQ job (was %s); queued again as %s", job_id, rq_id, new_rq_id)
    return 1


def _json(raw: str | None) -> dict[str, Any]:
    return json.loads(raw) if raw else {}
