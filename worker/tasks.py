"""The work RQ runs: `run_job(job_id)` takes a job from queued to a terminal state on the warm engine.

A Redis outage during a job costs it nothing: progress waits (worker/progress_writer.py), and the final
transition is tried again until Redis answers or the job's time limit passes (worker/outage.py).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from rq import Queue, get_current_job
from rq.timeouts import JobTimeoutException

from nst_core.progress import StopTransfer
from nst_shared import deadlines, job_metrics, painting
from nst_shared.errors import NstError, StorageUnavailable
from nst_shared.images import encode_image
from nst_shared.job_options import DEADLINE_EXCEEDED, PREVIEW_FORMAT, PREVIEW_QUALITY, deadline_of
from nst_shared.job_status import JobStatus
from nst_shared.jobs import Files, JobRecord, JobStore, StopRequest
from nst_shared.logs import current_job_id
from nst_shared.params import TransferParams
from nst_shared.queueing import requeue
from nst_shared.redis_connection import connect
from nst_shared.redis_outages import refuses_writes
from nst_shared.settings import Settings, get_settings
from nst_shared.storage import Storage, open_storage
from nst_shared.webhook_progress import ProgressDeliveries
from worker import video_task
from worker.engine import get_engine
from worker.heartbeat import Heartbeat
from worker.outage import until_redis_answers
from worker.progress_writer import BackgroundWriter, ProgressWriter, Written

log = logging.getLogger("nst.worker")

# Set by the worker's SIGTERM handler: the running job stops within one iteration and goes back to the queue.
shutdown_requested = threading.Event()

RESULT_WRITE_TRIES = 4  # with pauses of 1, 2 and 4 s: a storage hiccup is ridden out, an outage fails the job
RESULT_FIRST_WAIT_S = 1.0

T = TypeVar("T")


def run_job(job_id: str) -> str:
    """Run one job; every outcome is written to its record, so RQ itself always sees success."""
    token = current_job_id.set(job_id)
    try:
        settings = get_settings()
        rq_job = get_current_job()
        store = JobStore(job_redis(), ttl_s=settings.result_ttl_s)
        run = JobRun(job_id, store, job_storage(), settings, rq_job)
        try:
            outcome = run.run()
        except redis.exceptions.RedisError as exc:
            if not refuses_writes(exc):
                raise
            outcome = run.refused_writes(exc)
        if outcome in job_metrics.FINISHED:
            _observe_duration(store, job_id)
        return outcome
    finally:
        current_job_id.reset(token)


@functools.cache
def job_redis() -> redis.Redis:
    """This process's client for the job's writes, with bounded replies (NST_REDIS_SOCKET_TIMEOUT_S)."""
    settings = get_settings()
    return connect(settings, socket_timeout_s=settings.redis_socket_timeout_s)


@functools.cache
def job_storage() -> Storage:
    """This process's storage, built once (an S3 client is reused across jobs)."""
    return open_storage(get_settings())


class JobRun:
    """One job on this worker, from taking it to its final status (or to finding it is not ours any more)."""

    def __init__(self, job_id: str, store: JobStore, storage: Storage, settings: Settings, rq_job: Any) -> None:
        self.job_id, self.store, self.storage, self.settings, self.rq_job = job_id, store, storage, settings, rq_job
        # Writes that must land are tried until Redis answers, within the job's time limit.
        self.deadline = time.monotonic() + (rq_job.timeout or settings.job_timeout_base_s)
        self.attempt = 0  # the attempt's number once started: every write of the run carries it
        self.heartbeat_refused = threading.Event()  # set when Redis refuses this attempt's beat: not ours any more
        self.deadline_at: float | None = None  # the job's own deadline (cancel_after), Unix time
        self.extra: dict[str, Any] = {}

    def retried(self, call: Callable[[], T], what: str) -> T:
        return until_redis_answers(call, what=what, deadline=self.deadline)

    def run(self) -> str:
        job_id, store = self.job_id, self.store
        record = self.retried(lambda: store.get(job_id), "reading the job")
        if record is None or record.status is not JobStatus.QUEUED:
            log.info("skipped: %s", "record expired or deleted" if record is None else record.status.value)
            return "skipped"
        if deadlines.passed(record):  # the sweeper had not come to it yet
            queue = self.queue()
            canceled = self.retried(lambda: deadlines.cancel_if_not_started(self.store, queue, record), "canceling")
            log.info("%s: its deadline passed before it started", "canceled" if canceled else "skipped")
            return "canceled" if canceled else "skipped"
        self.deadline_at, self.extra = deadline_of(record.created_at, record.extra), record.extra
        engine = get_engine(self.settings)
        started_at = time.time()
        attempt = self.retried(
            lambda: store.start(
                job_id,
                heartbeat_ttl_s=self.settings.heartbeat_ttl_s,
                started_at=started_at,
                device=engine.device_name,
                precision=engine.precision,
                worker=self.rq_job.worker_name or "",
            ),
            "starting",
        )
        if attempt is None:
            return "skipped"
        self.attempt = attempt
        with Heartbeat(
            store,
            job_id,
            attempt=attempt,
            interval_s=self.settings.heartbeat_interval_s,
            ttl_s=self.settings.heartbeat_ttl_s,
        ) as heartbeat:
            self.heartbeat_refused = heartbeat.stale
            job_metrics.observe_queue_wait(store.redis, started_at - record.created_at)
            log.info("started on %s (%s), attempt %d", engine.device_name, engine.precision, attempt)
            try:
                return self.transfer(engine, record)
            except NstError as exc:
                log.info("failed: %s: %s", exc.code, exc)
                return self.fail(exc.code, str(exc))
            except JobTimeoutException:
                log.warning("timed out")
                return self.fail("timeout", "the job ran over its time limit")
            except MemoryError:  # the host refused an allocation (CUDA's own OOM arrives as DeviceOutOfMemory)
                log.warning("out of memory")
                return self.fail(
                    "out_of_memory", "the job needed more memory than the worker has; try a smaller max_size"
                )
            except redis.exceptions.RedisError as exc:
                if refuses_writes(exc):  # ended here, while this attempt's heartbeat still holds the job
                    return self.refused_writes(exc)
                log.exception("crashed")
                return self.fail("internal_error", f"the worker failed: {type(exc).__name__}")
            except Exception as exc:  # a bug or a device fault: the job fails, the worker lives on
                log.exception("crashed")
                return self.fail("internal_error", f"the worker failed: {type(exc).__name__}")

    def write_params(self, params: TransferParams, record: JobRecord) -> None:
        """Clients see the parameters as applied (a requeued run and the picture's provenance use the same seed)."""
        if params.to_dict() != record.params:
            self.retried(
                lambda: self.store.set_fields(self.job_id, attempt=self.attempt, params=params.to_dict()), "parameters"
            )

    def transfer(self, engine: Any, record: JobRecord) -> str:
        if record.kind == "video":
            return video_task.paint_clip(self, engine, record)
        job_id, storage = self.job_id, self.storage
        files = painting.Inputs(
            content=_input(storage, job_id, Files.CONTENT),
            styles=[_input(storage, job_id, Files.style(i)) for i in range(record.styles)],
            masks=[_input(storage, job_id, Files.style_mask(i)) for i in range(record.extra.get("style_masks", 0))],
        )
        inputs = painting.decode(files, max_pixels=self.settings.max_image_pixels)
        attempt = self.attempt
        writer = ProgressWriter(self.store, job_id, attempt=attempt)
        background = BackgroundWriter(writer)  # Redis's round trips off the engine's thread
        preview_file = Files.preview(attempt)
        hook = ProgressDeliveries.for_job(
            self.store, job_id, self.extra, interval_s=self.settings.webhook_progress_interval_s
        )
        reason: dict[str, str] = {}

        def on_progress(progress: Any) -> None:
            data = _progress_event(progress)
            background.post("progress", data, progress=data)
            if background.stop is None:
                hook.offer(data)  # a Redis call at most once an interval (NST_WEBHOOK_PROGRESS_INTERVAL_S)
            if progress.preview is not None and background.stop != "gone":
                background.post(  # encoded and stored on the writer's thread, once the attempt is known current
                    "preview",
                    {"step": progress.step},
                    store=functools.partial(self.store_preview, preview_file, progress.preview, progress.step),
                    preview_step=progress.step,
                    preview_file=preview_file,
                )
            if (stop := background.stop or self.stop_reason()) is not None:
                reason["stop"] = stop
                raise StopTransfer()

        try:
            result = painting.paint(
                engine,
                inputs,
                TransferParams.from_dict(record.params),
                explicit=frozenset(record.extra.get("explicit", record.params)),
                caps=self.settings,
                on_params=lambda params: self.write_params(params, record),
                callback=on_progress,
                job_id=job_id,
                attempt=attempt,
            )
        finally:
            background.close()
        job_metrics.observe_iterations(self.store.redis, engine.device_name, result.steps_done, result.elapsed_s)
        stop = reason.get("stop")
        if stop == "shutdown":
            return self.requeue()
        # What Redis missed of the last steps goes before the final event.
        if stop == "gone" or self.retried(writer.flush, "the last progress") is Written.NOT_RUNNING:
            return self.not_ours("stopped")
        if stop in (StopRequest.CANCEL, "deadline"):
            kept = self.write_preview(preview_file, _preview(result.image), step=result.steps_done)
            error = {"code": DEADLINE_EXCEEDED, "message": "the job did not finish within its cancel_after"}
            fields: dict[str, Any] = {"error": error} if stop == "deadline" else {}
            if kept:
                fields["preview_file"] = preview_file
            if not self.end(JobStatus.CANCELED, steps_done=result.steps_done, **fields):
                return self.not_ours("canceled")
            log.info("canceled after %d steps%s", result.steps_done, " (deadline)" if stop == "deadline" else "")
            return "canceled"
        result_file = Files.result(attempt)
        self.write_result(result_file, result.encode())
        if stop == StopRequest.FINISH and not self.retried(
            lambda: self.store.running_event(
                job_id, "finished_early", {"step": result.steps_done, "steps": result.params.steps}, attempt=attempt
            ),
            "finishing early",
        ):
            return self.not_ours("finished early")
        if not self.end(JobStatus.SUCCEEDED, steps_done=result.steps_done, result_file=result_file):
            return self.not_ours("finished")
        log.info(
            "succeeded%s: %d steps in %.1f s", " (finished early)" if stop else "", result.steps_done, result.elapsed_s
        )
        return "succeeded"

    def stop_reason(self) -> str | None:
        """Why the run must stop at this step, besides a client's request: gone, shutdown, deadline or None."""
        if self.heartbeat_refused.is_set():
            return "gone"  # taken back by a sweeper: not ours any more
        if shutdown_requested.is_set():
            return "shutdown"
        if self.deadline_at is not None and time.time() >= self.deadline_at:
            return "deadline"
        return None

    def store_preview(self, name: str, image: Any, step: int) -> bool:
        return self.write_preview(name, _preview(image), step=step)

    def write_preview(self, name: str, data: bytes, *, step: int) -> bool:
        """A preview is a courtesy: one that storage refuses is skipped (the next one tries again)."""
        try:
            self.storage.put(self.job_id, name, data)
        except Exception as exc:  # the folder or the bucket out of reach: the painting goes on
            log.warning("preview of step %d skipped: storage failed: %s: %s", step, type(exc).__name__, exc)
            return False
        return True

    def write_result(self, name: str, data: bytes) -> None:
        """The result is the job: written again after a growing pause, then the job fails storage_unavailable."""
        wait_s = RESULT_FIRST_WAIT_S
        for tries in range(1, RESULT_WRITE_TRIES + 1):
            try:
                self.storage.put(self.job_id, name, data)
                return
            except Exception as exc:  # the folder or the bucket out of reach (each S3 call is bounded)
                if tries == RESULT_WRITE_TRIES:
                    raise StorageUnavailable(
                        f"the result could not be written to storage ({type(exc).__name__}, {tries} tries)"
                    ) from exc
                log.warning("result not written (%s: %s); trying again in %.0f s", type(exc).__name__, exc, wait_s)
                time.sleep(wait_s)
                wait_s *= 2

    def end(self, status: JobStatus, **fields: Any) -> bool:
        """Move the job from running to `status` for this attempt; False when it is not ours any more."""
        return self.retried(
            lambda: self.store.transition(
                self.job_id, status, allowed={JobStatus.RUNNING}, attempt=self.attempt, **fields
            ),
            f"marking the job {status.value}",
        )

    def fail(self, code: str, message: str) -> str:
        if not self.end(JobStatus.FAILED, error={"code": code, "message": message}):
            return self.not_ours("failed")
        return "failed"

    def refused_writes(self, exc: Exception) -> str:
        """Redis refused the job's writes (MISCONF, OOM) past its time limit: the job fails with a code of its
        own once Redis takes writes again (until then it would stay running with no worker)."""
        log.error("Redis refused the job's writes past its time limit: %s", exc)
        message = "the job store refused writes (out of disk or memory) for longer than the job's time limit"
        while True:
            try:
                ended = until_redis_answers(
                    lambda: self.store.transition(
                        self.job_id,
                        JobStatus.FAILED,
                        allowed={JobStatus.RUNNING},
                        attempt=self.attempt or None,
                        error={"code": "store_refused_writes", "message": message},
                    ),
                    what="marking the job failed",
                    stop=shutdown_requested.is_set,
                )
                return "failed" if ended else self.not_ours("failed")
            except JobTimeoutException:  # RQ's time limit fell during the wait (it fires once): wait on
                log.warning("the job's time limit passed while Redis refused its writes")

    def not_ours(self, what: str) -> str:
        """The record moved on without this attempt (deleted; failed or requeued by a sweeper, and maybe run
        by another attempt since). A deleted
        job's files go now: the worker may have written a preview or a result after the API deleted them."""
        if self.retried(lambda: self.store.get(self.job_id), "reading the job") is None:
            self.storage.delete_job(self.job_id)
            log.info("%s; the job was deleted meanwhile: its files are deleted", what)
        else:
            log.warning("%s; attempt %d is no longer the job's (a sweeper took it back)", what, self.attempt)
        return "skipped"

    def queue(self) -> Queue:
        return Queue(self.settings.queue_name, connection=self.store.redis, serializer=self.rq_job.serializer)

    def requeue(self) -> str:
        """The worker is stopping: put the job back in the queue for another worker (nothing is lost)."""
        queue = self.queue()
        rq_id = self.retried(
            lambda: requeue(self.store, queue, self.job_id, settings=self.settings, attempt=self.attempt), "requeueing"
        )
        if rq_id is None:
            return self.not_ours("stopping")
        log.info("worker stopping: job requeued as %s", rq_id)
        return "requeued"


def _preview(image: Any) -> bytes:
    return encode_image(image, PREVIEW_FORMAT, quality=PREVIEW_QUALITY)


def _progress_event(progress: Any) -> dict[str, Any]:
    rate = progress.step / progress.elapsed_s if progress.elapsed_s > 0 else None
    # At print size a step of the last scale costs hundreds of the first's: the engine weighs them.
    fraction = progress.work_fraction if progress.work_fraction is not None else progress.step / progress.steps
    return {
        "step": progress.step,
        "steps": progress.steps,
        "fraction": fraction,
        "scale": progress.scale,
        "scales": progress.scales,
        "block": progress.block,
        "blocks": progress.blocks,
        "width": progress.width,
        "height": progress.height,
        "elapsed_s": round(progress.elapsed_s, 3),
        "iterations_per_s": round(rate, 4) if rate else None,
        "eta_s": round(progress.elapsed_s * (1 - fraction) / fraction, 1) if rate and fraction else None,
        "losses": {
            "content": progress.content_loss,
            "style": progress.style_loss,
            "tv": progress.tv_loss,
            "total": progress.total_loss,
        },
    }


def _observe_duration(store: JobStore, job_id: str) -> None:
    try:
        record = store.get(job_id)
    except Exception as exc:  # Redis away: the job has ended all the same
        log.warning("metrics not recorded: %s", exc)
        return
    if record is not None and record.status.terminal and record.started_at and record.finished_at:
        job_metrics.observe_job_duration(store.redis, record.status.value, record.finished_at - record.started_at)


def _input(storage: Storage, job_id: str, name: str) -> bytes:
    try:
        data = storage.get(job_id, name)
    except Exception as exc:  # the folder or the bucket out of reach
        raise StorageUnavailable(
            f"the job's {name} image could not be read from storage ({type(exc).__name__})"
        ) from exc
    if data is None:
        raise NstError(f"the job's {name} image is missing from storage (expired or deleted)")
    return data
