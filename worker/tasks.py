"""The work RQ runs: `run_job(job_id)` takes a job from queued to a terminal state on the warm engine."""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any

from rq import Queue, get_current_job
from rq.timeouts import JobTimeoutException

from nst_core.progress import StopTransfer
from nst_shared import metrics
from nst_shared.errors import NstError
from nst_shared.images import decode_image, encode_image
from nst_shared.jobs import JobStatus, JobStore
from nst_shared.logs import current_job_id
from nst_shared.params import TransferParams, for_device
from nst_shared.queueing import requeue
from nst_shared.settings import Settings, get_settings
from nst_shared.storage import Storage, open_storage
from worker.engine import get_engine
from worker.heartbeat import Heartbeat

log = logging.getLogger("nst.worker")

# Set by the worker's SIGTERM handler: the running job stops within one iteration and goes back to the queue.
shutdown_requested = threading.Event()

RESULT = "result.png"
PREVIEW = "preview.png"


def run_job(job_id: str) -> str:
    """Run one job; every outcome is written to its record, so RQ itself always sees success."""
    token = current_job_id.set(job_id)
    try:
        settings = get_settings()
        rq_job = get_current_job()
        store = JobStore(rq_job.connection, ttl_s=settings.result_ttl_s)
        outcome = _run(job_id, store, job_storage(), settings, rq_job)
        if outcome in metrics.FINISHED:
            _observe_duration(store, job_id)
        return outcome
    finally:
        current_job_id.reset(token)


@functools.cache
def job_storage() -> Storage:
    """This process's storage, built once (an S3 client is reused across jobs)."""
    return open_storage(get_settings())


def _run(job_id: str, store: JobStore, storage: Storage, settings: Settings, rq_job: Any) -> str:
    record = store.get(job_id)
    if record is None or record.status is not JobStatus.QUEUED:
        log.info("skipped: %s", "record expired or deleted" if record is None else record.status.value)
        return "skipped"
    engine = get_engine(settings)
    with Heartbeat(store, job_id, interval_s=settings.heartbeat_interval_s, ttl_s=settings.heartbeat_ttl_s):
        started_at = time.time()
        if not store.transition(job_id, JobStatus.RUNNING, allowed={JobStatus.QUEUED}, started_at=started_at,
                                device=engine.device_name, precision=engine.precision,
                                worker=rq_job.worker_name or "",
                                attempts=record.attempts + 1):
            return "skipped"
        metrics.observe_queue_wait(store.redis, started_at - record.created_at)
        log.info("started on %s (%s)", engine.device_name, engine.precision)
        try:
            params = for_device(TransferParams.from_dict(record.params), engine.device.type,
                                explicit=frozenset(record.extra.get("explicit", record.params)))
            if params.to_dict() != record.params:
                store.set_fields(job_id, params=params.to_dict())  # clients see the parameters as applied
            return _transfer(job_id, store, storage, settings, engine, params, record.styles, rq_job)
        except NstError as exc:
            log.info("failed: %s: %s", exc.code, exc)
            _fail(store, job_id, exc.code, str(exc))
        except JobTimeoutException:
            log.warning("timed out")
            _fail(store, job_id, "timeout", "the job ran over its time limit")
        except MemoryError:  # the host refused an allocation (CUDA's own OOM arrives as DeviceOutOfMemory)
            log.warning("out of memory")
            _fail(store, job_id, "out_of_memory", "the job needed more memory than the worker has; try a "
                  "smaller max_size")
        except Exception as exc:  # a bug or a device fault: the job fails, the worker lives on
            log.exception("crashed")
            _fail(store, job_id, "internal_error", f"the worker failed: {type(exc).__name__}")
        return "failed"


def _transfer(job_id: str, store: JobStore, storage: Storage, settings: Settings, engine: Any,
              params: TransferParams, n_styles: int, rq_job: Any) -> str:
    content = decode_image(_input(storage, job_id, "content"), max_pixels=settings.max_image_pixels)
    styles = [decode_image(_input(storage, job_id, f"style-{i}"), max_pixels=settings.max_image_pixels)
              for i in range(n_styles)]
    reason: dict[str, str] = {}

    def on_progress(progress: Any) -> None:
        rate = progress.step / progress.elapsed_s if progress.elapsed_s > 0 else None
        # At print size a step of the last scale costs hundreds of the first's: the engine weighs them.
        fraction = progress.work_fraction if progress.work_fraction is not None else progress.step / progress.steps
        data = {
            "step": progress.step, "steps": progress.steps, "fraction": fraction,
            "scale": progress.scale, "scales": progress.scales, "block": progress.block, "blocks": progress.blocks,
            "width": progress.width,
            "height": progress.height, "elapsed_s": round(progress.elapsed_s, 3),
            "iterations_per_s": round(rate, 4) if rate else None,
            "eta_s": round(progress.elapsed_s * (1 - fraction) / fraction, 1) if rate and fraction else None,
            "losses": {"content": progress.content_loss, "style": progress.style_loss,
                       "tv": progress.tv_loss, "total": progress.total_loss},
        }
        store.running_event(job_id, "progress", data, progress=data)
        if progress.preview is not None:
            storage.put(job_id, PREVIEW, encode_image(progress.preview))
            store.running_event(job_id, "preview", {"step": progress.step}, preview_step=progress.step)
        if store.cancel_requested(job_id):
            reason["stop"] = "cancel"
        elif shutdown_requested.is_set():
            reason["stop"] = "shutdown"
        if reason:
            raise StopTransfer()

    result = engine.stylize(content, styles, params, callback=on_progress)
    metrics.observe_iterations(store.redis, engine.device_name, result.steps_done, result.elapsed_s)
    if reason.get("stop") == "cancel":
        storage.put(job_id, PREVIEW, encode_image(result.image))
        store.transition(job_id, JobStatus.CANCELED, allowed={JobStatus.RUNNING})
        log.info("canceled after %d steps", result.steps_done)
        return "canceled"
    if reason.get("stop") == "shutdown":
        return _requeue(job_id, store, settings, rq_job)
    storage.put(job_id, RESULT, encode_image(result.image))
    store.transition(job_id, JobStatus.SUCCEEDED, allowed={JobStatus.RUNNING})
    log.info("succeeded: %d steps in %.1f s", result.steps_done, result.elapsed_s)
    return "succeeded"


def _requeue(job_id: str, store: JobStore, settings: Settings, rq_job: Any) -> str:
    """The worker is stopping: put the job back in the queue for another worker (nothing is lost)."""
    queue = Queue(settings.queue_name, connection=rq_job.connection, serializer=rq_job.serializer)
    rq_id = requeue(store, queue, job_id, settings=settings)
    if rq_id is None:
        return "skipped"
    log.info("worker stopping: job requeued as %s", rq_id)
    return "requeued"


def _observe_duration(store: JobStore, job_id: str) -> None:
    try:
        record = store.get(job_id)
    except Exception as exc:  # Redis away: the job has ended all the same
        log.warning("metrics not recorded: %s", exc)
        return
    if record is not None and record.status.terminal and record.started_at and record.finished_at:
        metrics.observe_job_duration(store.redis, record.status.value, record.finished_at - record.started_at)


def _input(storage: Storage, job_id: str, name: str) -> bytes:
    data = storage.get(job_id, name)
    if data is None:
        raise NstError(f"the job's {name} image is missing from storage (expired or deleted)")
    return data


def _fail(store: JobStore, job_id: str, code: str, message: str) -> None:
    store.transition(job_id, JobStatus.FAILED, allowed={JobStatus.RUNNING},
                     error={"code": code, "message": message})
