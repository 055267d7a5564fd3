"""/jobs: submit, read, list, follow, download, cancel and delete style-transfer jobs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from rq import Queue

from nst_shared import capacity, webhooks
from nst_shared.errors import ImageError
from nst_shared.images import check_min_side, decode_image, fit_size
from nst_shared.jobs import TERMINAL, JobRecord, JobStatus, JobStore, Keys, new_job_id
from nst_shared.params import TransferParams
from nst_shared.queueing import enqueue_job
from nst_shared.schedule import style_longest_px
from nst_shared.storage import Storage
from nst_shared.settings import Settings
from service.auth import Caller, KeyCallerDep, KeyRing, KeysDep, LinkCallerDep
from service.deps import AsyncRedisDep, QueueDep, RedisDep, SettingsDep, StorageDep, StoreDep
from service.errors import ApiError, from_image_error, not_found
from service.events import job_event_stream
from service.forms import JobForm, check_known_fields, to_params
from service.limits import check_budget, check_memory
from service.schemas import JobList, JobPublic, public_job

# Keys and rate limits are first checked by service.guard.AccessGuard, before a body is read.
router = APIRouter(prefix="/jobs", tags=["jobs"])

ERRORS = {code: {"description": text, "content": {"application/json": {"example": {
    "error": {"code": name, "message": "..."}}}}} for code, name, text in (
    (401, "api_key_required", "No API key, or one not accepted (when the service has keys)"),
    (404, "job_not_found", "Unknown job, or another key's"), (409, "wrong_state", "The job is not in a state for this"),
    (429, "rate_limited", "Too many requests"),
    (413, "file_too_large", "Upload too large"), (415, "unsupported_format", "Not an allowed image format"),
    (422, "invalid_parameter", "Bad parameter or unreadable image"), (503, "redis_unavailable", "Busy or down"))}


def _load(store: JobStore, job_id: str, caller: Caller, keys: KeyRing) -> JobRecord:
    """The caller's job: 404 when it does not exist or belongs to another key (ids leak nothing)."""
    record = store.get(job_id)
    if record is None:
        raise not_found(job_id)
    caller.may_read(record, keys)
    return record


def _public(record: JobRecord, keys: KeyRing, queue: Queue | None = None) -> JobPublic:
    """The job as its owner sees it; with keys on, its links are signed so a browser can open them."""
    position = _queue_position(queue, record) if queue is not None else None
    return public_job(record, queue_position=position, token=_token(record, keys))


def _token(record: JobRecord, keys: KeyRing) -> str | None:
    return keys.sign(record.id, record.owner or "") if keys.enabled else None


def _queue_position(queue: Queue, record: JobRecord) -> int | None:
    if record.status is not JobStatus.QUEUED or not record.rq_job_id:
        return None
    position = queue.get_job_position(record.rq_job_id)
    return position + 1 if position is not None else None


async def _read_upload(upload: UploadFile, field: str, settings: Settings) -> bytes:
    if upload.size is not None and upload.size > settings.max_upload_bytes:
        raise ApiError(413, "file_too_large",
                       f"{field}: {upload.size} bytes; at most {settings.max_upload_bytes} per file", field=field)
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, "file_too_large", f"{field}: at most {settings.max_upload_bytes} bytes per file",
                       field=field)
    return data


@router.post("", status_code=202, response_model=JobPublic, responses=ERRORS,
             summary="Submit a style-transfer job")
async def create_job(
    request: Request, response: Response, settings: SettingsDep, store: StoreDep, storage: StorageDep,
    queue: QueueDep, caller: KeyCallerDep, keys: KeysDep,
    form: Annotated[JobForm, Form()],  # type: ignore[valid-type]
    content: Annotated[UploadFile, File(description="The photograph to paint.")],
    style: Annotated[list[UploadFile], File(description="One or more style images (repeat the field).")],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    webhook_url: Annotated[str | None, Form(max_length=2000, description="POSTed to when the job ends "
                                            "(signed; see the README).")] = None,
    webhook_events: Annotated[str, Form(description="Comma-separated: completed (the end), status (every "
                                        "status change).")] = "completed",
) -> JobPublic:
    """Validates the images and parameters, stores the images and queues the job. Answers at once."""
    check_known_fields(set((await request.form()).keys()))
    if len(style) > settings.max_styles:
        raise ApiError(422, "too_many_styles", f"style: at most {settings.max_styles} style images",
                       field="style")
    params = to_params(form, styles=len(style), settings=settings)
    # Which parameters the client chose: the worker may replace the others with its device's defaults.
    extra: dict[str, Any] = {"explicit": sorted(form.model_fields_set)}
    events = _webhook_events(webhook_events)
    if webhook_url:
        extra["webhook"] = await _webhook(webhook_url, events, settings)
    content_bytes = await _read_upload(content, "content", settings)
    style_bytes = [await _read_upload(s, "style", settings) for s in style]
    # Decoding, Redis and the disk block: off the event loop, so other requests and event streams go on.
    # A repeated Idempotency-Key answers exactly as the first request did: 202 with the same job.
    job = await asyncio.to_thread(_submit, store, storage, queue, settings, params, extra,
                                  content_bytes, style_bytes, idempotency_key, caller, keys)
    response.headers["Location"] = f"/jobs/{job.id}"
    response.headers["Retry-After"] = "1"
    return job


def _submit(store: JobStore, storage: Storage, queue: Queue, settings: Settings, params: TransferParams,
            extra: dict[str, Any], content_bytes: bytes, style_bytes: list[bytes],
            idempotency_key: str | None, caller: Caller, keys: KeyRing) -> JobPublic:
    """Validate the images, then store and queue the job (or find the earlier one of this key)."""
    _validate_images(content_bytes, style_bytes, params, settings, capacity.published(store.redis))
    digest = hashlib.sha256(json.dumps(params.to_dict(), sort_keys=True).encode())
    for data in (content_bytes, *style_bytes):
        digest.update(hashlib.sha256(data).digest())
    digest.update(json.dumps(extra, sort_keys=True).encode())  # another webhook is another request
    if queue.count >= settings.max_queued_jobs:
        raise ApiError(503, "queue_full", f"{settings.max_queued_jobs} jobs are waiting already; try again later",
                       headers={"Retry-After": "30"})
    job_id = new_job_id()
    claim = None
    if idempotency_key:
        # Keys are per caller: another key's Idempotency-Key never finds (or blocks) this one's job.
        claim, existing = _claim_idempotency_key(store, f"{caller.owner or ''}:{idempotency_key}", job_id,
                                                 digest.hexdigest(), settings)
        if existing is not None:
            return _public(existing, keys, queue)
    try:
        storage.put(job_id, "content", content_bytes)
        for i, data in enumerate(style_bytes):
            storage.put(job_id, f"style-{i}", data)
        store.create(job_id, params=params.to_dict(), styles=len(style_bytes), owner=caller.owner, extra=extra)
        store.set_fields(job_id, rq_job_id=job_id)
        enqueue_job(queue, job_id, settings=settings, params=params.to_dict())
    except Exception:
        # Half-submitted (Redis went away mid-way): undo what we can so no job is left queued that no
        # worker will ever see, and so a retry with the same Idempotency-Key submits afresh.
        _undo_submission(store, storage, job_id, claim)
        raise
    record = store.get(job_id)
    assert record is not None
    return _public(record, keys, queue)


def _validate_images(content: bytes, styles: list[bytes], params: TransferParams, settings: Settings,
                     offers: list[capacity.WorkerMemory]) -> None:
    try:
        image = decode_image(content, max_pixels=settings.max_image_pixels)
        out = fit_size(*image.size, params.max_size)
        check_min_side(out, "content image at this max_size")
        check_budget(params, image.size, settings)
        check_memory(out, offers)
    except ImageError as exc:
        raise from_image_error(exc, "content") from None
    for data in styles:
        try:
            style = decode_image(data, max_pixels=settings.max_image_pixels)
            longest = style_longest_px(style.size, max(out), params.style_scale)
            check_min_side(fit_size(*style.size, longest), "style image at this style_scale")
        except ImageError as exc:
            raise from_image_error(exc, "style") from None


def _webhook_events(events_text: str) -> list[str]:
    """The webhook events asked for (checked even without a webhook_url: a typo is an error)."""
    events = [e.strip() for e in events_text.split(",") if e.strip()]
    if not events or any(e not in webhooks.EVENTS for e in events):
        raise ApiError(422, "invalid_parameter", f"webhook_events: any of {', '.join(webhooks.EVENTS)}",
                       field="webhook_events")
    return events


async def _webhook(url: str, events: list[str], settings: Settings) -> dict[str, object]:
    """The job's webhook, once its URL passes the SSRF check (422 naming the field otherwise)."""
    if not settings.webhook_secret:
        raise ApiError(422, "webhooks_disabled", "webhooks are not configured on this service (NST_WEBHOOK_SECRET)",
                       field="webhook_url")
    try:
        await asyncio.to_thread(webhooks.check_url, url, allow=settings.webhook_allow)  # DNS: off the loop
    except webhooks.WebhookRefused as exc:
        raise ApiError(422, "webhook_refused", f"webhook_url: {exc}", field="webhook_url") from None
    return {"url": url, "events": events}


def _undo_submission(store: JobStore, storage: Storage, job_id: str, claim: str | None) -> None:
    for undo in (lambda: store.delete(job_id), lambda: storage.delete_job(job_id),
                 lambda: store.redis.delete(claim) if claim else None):
        try:
            undo()
        except Exception:  # best effort: Redis may still be down; the sweeper removes orphaned files
            pass


def _claim_idempotency_key(store: JobStore, key: str, job_id: str, body_hash: str,
                           settings: Settings) -> tuple[str | None, JobRecord | None]:
    """(the claimed Redis key, None) when this request owns the key; (None, the earlier job) when the same
    body came before; 422 when the key came with another body."""
    redis_key = Keys.idempotency(hashlib.sha256(key.encode()).hexdigest())
    claim = json.dumps({"job_id": job_id, "hash": body_hash})
    if store.redis.set(redis_key, claim, nx=True, ex=settings.result_ttl_s):
        return redis_key, None
    earlier = json.loads(store.redis.get(redis_key) or "{}")
    if earlier.get("hash") != body_hash:
        raise ApiError(422, "idempotency_key_reused",
                       "this Idempotency-Key was used with a different request", field="Idempotency-Key")
    for _ in range(50):  # the first request may still be storing its files
        record = store.get(earlier["job_id"])
        if record is not None:
            return None, record
        time.sleep(0.05)
    raise not_found(earlier["job_id"])


@router.get("", response_model=JobList, summary="Recent jobs, newest first")
def list_jobs(store: StoreDep, queue: QueueDep, caller: KeyCallerDep, keys: KeysDep,
              offset: Annotated[int, Query(ge=0)] = 0,
              limit: Annotated[int, Query(ge=1, le=100)] = 20) -> JobList:
    """With API keys on, only the caller's own jobs."""
    records, total = store.recent(offset=offset, limit=limit, owner=caller.owner if keys.enabled else None)
    return JobList(items=[_public(r, keys, queue) for r in records],
                   total=total, offset=offset, limit=limit)


@router.get("/{job_id}", response_model=JobPublic, responses=ERRORS, summary="A job's status and progress")
def get_job(job_id: str, request: Request, store: StoreDep, queue: QueueDep, caller: KeyCallerDep,
            keys: KeysDep) -> Response:
    """Cheap to poll: send the ETag back in If-None-Match and get 304 while nothing changed."""
    record = _load(store, job_id, caller, keys)
    # The ETag leaves the signed links out: they change every second, the job does not.
    body = public_job(record, queue_position=_queue_position(queue, record)).model_dump_json().encode()
    etag = '"' + hashlib.sha1(body).hexdigest() + '"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    if keys.enabled:
        body = _public(record, keys, queue).model_dump_json().encode()
    return Response(body, media_type="application/json", headers={"ETag": etag, "Cache-Control": "no-cache"})


@router.get("/{job_id}/events", responses=ERRORS, summary="Server-Sent Events of a job",
            response_class=StreamingResponse)
async def job_events(job_id: str, request: Request, store: StoreDep, queue: QueueDep,
                     async_redis: AsyncRedisDep, settings: SettingsDep, caller: LinkCallerDep, keys: KeysDep,
                     last_event_id: Annotated[str | None, Header()] = None,
                     last_event_id_query: Annotated[str | None, Query(alias="last_event_id")] = None,
                     ) -> StreamingResponse:
    """`snapshot` first, then `status`, `progress`, `preview`, and `completed` (the whole job) at the end.
    Event ids come from the job's Redis stream: reconnect with Last-Event-ID (or ?last_event_id=, for
    browsers opening a new EventSource) to resume without loss. With API keys on, a browser passes the
    signed `?token=` from the job's links instead of the key."""
    record = await asyncio.to_thread(_load, store, job_id, caller, keys)
    token = _token(record, keys)
    snapshot = public_job(record, queue_position=_queue_position(queue, record), token=token)
    stream = job_event_stream(request, async_redis, store, job_id, snapshot=snapshot, token=token,
                              last_event_id=last_event_id or last_event_id_query or "0", keepalive_s=settings.sse_keepalive_s)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{job_id}/result", responses={**ERRORS, 200: {"content": {"image/png": {}}}},
            response_class=Response, summary="The finished picture (PNG)")
def get_result(job_id: str, store: StoreDep, storage: StorageDep, caller: LinkCallerDep,
               keys: KeysDep) -> Response:
    record = _load(store, job_id, caller, keys)
    if record.status is not JobStatus.SUCCEEDED:
        reason = {JobStatus.QUEUED: "the job is still queued", JobStatus.RUNNING: "the job is still running",
                  JobStatus.FAILED: "the job failed", JobStatus.CANCELED: "the job was canceled"}[record.status]
        raise ApiError(409, "result_not_ready" if record.status in (JobStatus.QUEUED, JobStatus.RUNNING)
                       else "no_result", f"no result: {reason}")
    data = storage.get(job_id, "result.png")
    if data is None:
        raise ApiError(404, "result_expired", "the result file is gone (expired or deleted)")
    return Response(data, media_type="image/png",
                    headers={"Content-Disposition": f'attachment; filename="nst-{job_id}.png"'})


@router.get("/{job_id}/preview", responses={**ERRORS, 200: {"content": {"image/png": {}}}},
            response_class=Response, summary="The latest preview (PNG)")
def get_preview(job_id: str, store: StoreDep, storage: StorageDep, caller: LinkCallerDep,
                keys: KeysDep) -> Response:
    _load(store, job_id, caller, keys)
    data = storage.get(job_id, "preview.png")
    if data is None:
        raise ApiError(404, "no_preview", "no preview yet (ask for one with preview_every)")
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-cache"})


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=ERRORS, status_code=202,
             summary="Cancel a queued or running job")
def cancel_job(job_id: str, store: StoreDep, queue: QueueDep, caller: KeyCallerDep,
               keys: KeysDep) -> JobPublic:
    """Queued: canceled at once. Running: stops within one iteration. Finished: 409."""
    record = _load(store, job_id, caller, keys)
    if record.status is JobStatus.QUEUED and store.transition(job_id, JobStatus.CANCELED,
                                                              allowed={JobStatus.QUEUED}):
        if record.rq_job_id:
            queue.remove(record.rq_job_id)
    else:
        record = _load(store, job_id, caller, keys)
        if record.status in TERMINAL:
            raise ApiError(409, "job_finished", f"the job has already {record.status.value}")
        store.request_cancel(job_id)
    return _public(_load(store, job_id, caller, keys), keys)


class Deleted(BaseModel):
    id: str
    deleted: bool


@router.delete("/{job_id}", status_code=200, response_model=Deleted, responses=ERRORS,
               summary="Delete a job and its files")
def delete_job(job_id: str, store: StoreDep, storage: StorageDep, queue: QueueDep, caller: KeyCallerDep,
               keys: KeysDep) -> Deleted:
    record = _load(store, job_id, caller, keys)
    if record.status is JobStatus.QUEUED:
        store.transition(job_id, JobStatus.CANCELED, allowed={JobStatus.QUEUED})
        if record.rq_job_id:
            queue.remove(record.rq_job_id)
    elif record.status is JobStatus.RUNNING:
        store.request_cancel(job_id)  # the worker stops within one iteration and finds the record gone
    store.delete(job_id)
    storage.delete_job(job_id)
    return Deleted(id=job_id, deleted=True)
