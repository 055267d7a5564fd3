"""`nst-worker`: a warm RQ worker that runs style-transfer jobs in its own process, one after another."""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
from typing import Sequence

import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from nst_shared import capacity
from nst_shared.allocator import restart_with_engine_malloc
from nst_shared.jobs import JobStore
from nst_shared.logs import configure_logging, current_job_id
from nst_shared.settings import Settings, get_settings
from nst_shared.storage import Storage
from nst_shared.sweeper import sweep
from worker import tasks
from worker.engine import get_engine
from worker.webhooks import WebhookSender

log = logging.getLogger("nst.worker")


class WarmWorker(SimpleWorker):
    """Runs jobs in-process (no fork per job, so the model stays loaded and CUDA is never forked).

    SIGTERM or Ctrl-C stops the running job within one iteration and puts it back in the queue.
    """

    def execute_job(self, job, queue):  # type: ignore[no-untyped-def]
        # RQ's own lines about the job carry its id too (RQ's id is ours, or ours-<attempt> after a requeue).
        token = current_job_id.set(str(job.args[0]) if job.args else job.id)
        try:
            return super().execute_job(job, queue)
        finally:
            current_job_id.reset(token)

    def request_stop(self, signum, frame):  # type: ignore[no-untyped-def]
        tasks.shutdown_requested.set()
        super().request_stop(signum, frame)


def _sweeper(store: JobStore, storage: Storage, settings: Settings, stop: threading.Event,
             offer: capacity.WorkerMemory) -> None:
    # Workers sweep too, so lost jobs are failed and old files deleted even when no API process runs.
    while not stop.wait(settings.reaper_interval_s):
        try:
            capacity.publish(store.redis, offer, ttl_s=_offer_ttl_s(settings))
            sweep(store, storage, settings)
        except Exception:  # Redis restarting: try again next round
            log.debug("sweep failed", exc_info=True)


def _offer_ttl_s(settings: Settings) -> int:
    return int(3 * settings.reaper_interval_s) + 5


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
    connection = redis.Redis.from_url(settings.redis_url)
    engine = get_engine(settings)  # load the model before taking the first job
    log.info("engine ready on %s (%s); queue %r at %s", engine.device_name, engine.precision, settings.queue_name,
             settings.redis_url)
    store = JobStore(connection, ttl_s=settings.result_ttl_s)
    stop = threading.Event()
    worker = WarmWorker([settings.queue_name], connection=connection, serializer=JSONSerializer,
                        name=args.name, log_job_description=False)
    # What this worker can hold, renewed while it lives: the API refuses a job that fits no worker.
    offer = capacity.WorkerMemory(worker=worker.name, budget_bytes=engine.memory_budget_bytes,
                                  precision=engine.precision, device=engine.device_name)
    capacity.publish(connection, offer, ttl_s=_offer_ttl_s(settings))
    threading.Thread(target=_sweeper, args=(store, tasks.job_storage(), settings, stop, offer),
                     daemon=True, name="sweeper").start()
    sender = WebhookSender(connection, settings) if settings.webhook_secret else None
    if sender:
        sender.start()
    try:
        worker.work(burst=args.burst, logging_level=level, with_scheduler=False)
    finally:
        stop.set()
        with contextlib.suppress(redis.RedisError):  # Redis away: the offer lapses by itself
            capacity.withdraw(connection, offer.worker)
        if sender:
            sender.stop()
    return 0
