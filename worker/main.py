"""`nst-worker`: a warm RQ worker that runs style-transfer jobs in its own process, one after another."""

from __future__ import annotations

import argparse
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from types import FrameType
from typing import Any

import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from nst_shared import presence
from nst_shared.allocator import restart_with_engine_malloc
from nst_shared.jobs import JobStore
from nst_shared.logs import configure_logging, current_job_id
from nst_shared.redis_connection import connect
from nst_shared.redis_outages import REDIS_DOWN, is_redis_outage
from nst_shared.settings import get_settings, redacted_url
from nst_shared.sweeper import Sweeper
from worker import tasks
from worker.engine import get_engine
from worker.gpu_share import reserve_gpu_share
from worker.outage import until_redis_answers
from worker.precision import decide_precision
from worker.webhook_delivery import WebhookSender

log = logging.getLogger("nst.worker")


class WarmWorker(SimpleWorker):
    """Runs jobs in-process (no fork per job, so the model stays loaded and CUDA is never forked).

    SIGTERM or Ctrl-C stops the running job within one iteration and puts it back in the queue. A Redis
    outage neither ends the worker nor loses RQ's own record of a job: its bookkeeping waits for Redis.
    """

    def execute_job(self, job, queue):  # type: ignore[no-untyped-def]
        # RQ's own lines about the job carry its id too (RQ's id is ours, or ours-<attempt> after a requeue).
        token = current_job_id.set(str(job.args[0]) if job.args else job.id)
        try:
            return super().execute_job(job, queue)
        finally:
            current_job_id.reset(token)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        tasks.shutdown_requested.set()
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]  # RQ leaves it unannotated

    # RQ's writes around a job: retried until Redis answers (RQ would otherwise quit on the first error).
    def prepare_execution(self, job):  # type: ignore[no-untyped-def]
        return self._until_redis_answers(super().prepare_execution, job, what="RQ: taking the job")

    def prepare_job_execution(self, job, remove_from_intermediate_queue=False):  # type: ignore[no-untyped-def]
        return self._until_redis_answers(
            super().prepare_job_execution, job, remove_from_intermediate_queue, what="RQ: starting the job"
        )

    def _finalize_success(self, job, queue, execution, return_value):  # type: ignore[no-untyped-def]
        return self._until_redis_answers(
            super()._finalize_success, job, queue, execution, return_value, what="RQ: recording the job's end"
        )

    def _finalize_failure(self, job, queue, execution, exc_info):  # type: ignore[no-untyped-def]
        return self._until_redis_answers(
            super()._finalize_failure, job, queue, execution, exc_info, what="RQ: recording the job's failure"
        )

    def _until_redis_answers(self, method: Any, *args: Any, what: str) -> Any:
        return until_redis_answers(lambda: method(*args), what=what, stop=lambda: self._stop_requested)

    # RQ's state and liveness writes between jobs: skipped while Redis is away (the next ones catch up).
    def heartbeat(self, timeout=None, pipeline=None):  # type: ignore[no-untyped-def]
        self._while_redis_answers(super().heartbeat, timeout, pipeline)

    def set_state(self, state, pipeline=None):  # type: ignore[no-untyped-def]
        self._while_redis_answers(super().set_state, state, pipeline)

    def set_shutdown_requested_date(self):  # type: ignore[no-untyped-def]
        self._while_redis_answers(super().set_shutdown_requested_date)

    def check_for_suspension(self, burst):  # type: ignore[no-untyped-def]
        self._while_redis_answers(super().check_for_suspension, burst)

    def run_maintenance_tasks(self):  # type: ignore[no-untyped-def]
        self._while_redis_answers(super().run_maintenance_tasks)

    def _while_redis_answers(self, method: Any, *args: Any) -> None:
        try:
            method(*args)
        except redis.exceptions.RedisError as exc:
            if not is_redis_outage(exc):
                raise
            log.debug("RQ bookkeeping skipped, Redis away or refusing writes: %s", exc)


def _every(interval_s: float, stop: threading.Event, name: str, action: Any) -> None:
    """Run `action` every `interval_s` on a thread until `stop`; a Redis outage skips rounds."""

    def loop() -> None:
        while True:
            try:
                action()
            except Exception:  # Redis restarting: try again next round
                log.debug("%s failed", name, exc_info=True)
            if stop.wait(interval_s):
                return

    threading.Thread(target=loop, daemon=True, name=name).start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nst-worker", description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--name", help="worker name (default: RQ's)")
    parser.add_argument("--log-level", help="default: NST_LOG_LEVEL")
    args = parser.parse_args(argv)
    if argv is None:  # the program itself, not a test calling main()
        restart_with_engine_malloc()

    settings = get_settings()
    level = (args.log_level or settings.log_level).upper()
    configure_logging(level=level, fmt=settings.log_format)
    # RQ's own connection: RQ sets its read timeout above its blocking dequeue's (minutes).
    rq_connection = connect(settings, socket_timeout_s=None)
    # Everything else (the job's writes, heartbeats, the sweeper, presence) waits for Redis a bounded time: a
    # write under a silent cut fails instead of landing minutes later (and would be refused as stale if it did).
    connection = tasks.job_redis()
    decision = decide_precision(settings)
    name = args.name or uuid.uuid4().hex  # RQ's default, known before the engine: a GPU share is held under it
    stop = threading.Event()
    gpu_share = reserve_gpu_share(connection, settings, worker=name)
    if gpu_share is not None:
        _every(settings.heartbeat_interval_s, stop, "gpu-share", gpu_share.renew)
    engine = get_engine(  # load the model before taking the first job
        settings, precision=decision.precision, memory_budget_bytes=gpu_share.budget_bytes if gpu_share else None
    )
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    log.info(
        "engine ready on %s%s in %s (%s); queue %r at %s",
        engine.device_name,
        f" (GPU {gpu})" if gpu else "",
        engine.precision,
        decision.reason,
        settings.queue_name,
        redacted_url(settings.redis_url),
    )
    store = JobStore(connection, ttl_s=settings.result_ttl_s)
    # RQ talks to Redis from the worker's construction on: a worker started while Redis restarts waits for it.
    until_redis_answers(rq_connection.ping, what="connecting to Redis")
    worker = WarmWorker(
        [settings.queue_name],
        connection=rq_connection,
        serializer=JSONSerializer,
        name=name,
        log_job_description=False,
    )
    engine_info = {
        "device": engine.device_name,
        "precision": engine.precision,
        "precision_reason": decision.reason,
        "gpu": gpu,
        "memory_budget_bytes": str(engine.memory_budget_bytes),
    }
    # Workers sweep too, so lost jobs are failed and old files deleted even when no API process runs.
    sweeper = Sweeper(store, tasks.job_storage(), settings)
    _every(settings.reaper_interval_s, stop, "sweeper", sweeper.sweep)
    _every(
        settings.heartbeat_interval_s,
        stop,
        "presence",
        lambda: presence.announce(connection, worker.name, ttl_s=settings.heartbeat_ttl_s, info=engine_info),
    )
    sender = WebhookSender(connection, settings) if settings.webhook_secret else None
    if sender:
        sender.start()
    try:
        worker.work(burst=args.burst, logging_level=level, with_scheduler=False)
    finally:
        stop.set()
        if sender:
            sender.stop()
        try:
            presence.withdraw(connection, worker.name)
            sweeper.release()
            if gpu_share is not None:
                gpu_share.release()
        except REDIS_DOWN:  # its presence and lease expire by themselves
            pass
    return 0
