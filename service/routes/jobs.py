"""/jobs: submit, read, list, follow, download, cancel, finish and delete style-transfer jobs (HTTP only: a
submission is service/submission.py's)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from rq import Queue
from starlette.background import BackgroundTask

from nst_shared.job_options import PREVIEW_QUALITY, output_of
from nst_shared.job_status import TERMINAL, JobStatus
from nst_shared.jobs import JobRecord, JobStore
from nst_shared.queueing import queue_positions
from service import clips, job_control, results
from service.auth import Caller, KeyCallerDep, KeyRing, KeysDep, LinkCallerDep
from service.deps import (
    AsyncRedisDep,
    HoldsDep,
    JobIdDep,
    JobReaderDep,
    QueueDep,
    SettingsDep,
    StorageDep,
    StoreDep,
    SubmissionsDep,
    UploadsDep,
)
from service.downloads import file_response
from service.errors import ApiError, not_found
from service.events import job_event_stream
from service.forms import form_data, read_job_form
from service.holds import held_stream
from service.openapi import SUBMISSION_BODY, error_responses, image_response
from service.schemas import Deleted, JobList, JobPublic, public_job
from service.waiting import MAX_WAIT_S, requested_wait_s, wait_for_end

# Keys and rate limits are first checked by service.guard.AccessGuard, before a body is read.
router = APIRouter(prefix="/jobs", tags=["jobs"])


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


# What a client can do next with the job POST /jobs made: OpenAPI links, so stateful tools and generated clients
# chain create -> read -> events -> result.
JOB_LINKS = {
    operation: {"operationId": operation, "parameters": {"job_id": "$response.body#/id"}}
    for operation in (
        "get_job",
        "stream_events",
        "get_result",
        "get_preview",
        "cancel_job",
        "finish_job",
        "delete_job",
    )
}
LOCATION = {"Location": {"description": "The job's URL", "schema": {"type": "string"}}}
CREATED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The job, ended while the request waited (`Prefer: wait=N`)",
        "headers": {
            **LOCATION,
            "Preference-Applied": {"description": "wait=N, when it was", "schema": {"type": "string"}},
        },
        "links": JOB_LINKS,
    },
    202: {
        "description": "Queued (or the earlier job of this Idempotency-Key), or still running after the wait",
        "headers": {
            **LOCATION,
            "Retry-After": {"description": "Seconds until polling is worth it", "schema": {"type": "integer"}},
        },
        "links": JOB_LINKS,
    },
}


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    operation_id="create_job",
    summary="Submit a style-transfer job",
    openapi_extra=SUBMISSION_BODY,
    responses={**CREATED, **error_responses(401, 413, 415, 422, 429, 503)},
)
async def create_job(
    request: Request,
    response: Response,
    submissions: SubmissionsDep,
    settings: SettingsDep,
    caller: KeyCallerDep,
    keys: KeysDep,
    uploads: UploadsDep,
    holds: HoldsDep,
    store: StoreDep,
    async_redis: AsyncRedisDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="Sending the same request again with the same key "
            "answers with the same job; the key with another request is a 422.",
        ),
    ] = None,
    prefer: Annotated[
        str | None,
        Header(
            max_length=200,
            description=f"`wait=N` (RFC 7240; N at most {MAX_WAIT_S}): answer when the job has ended (200) or "
            "after N seconds (202, as without it).",
        ),
    ] = None,
) -> JobPublic:
    """Multipart form: `content` (a file), `style` (a file; repeat the field for several) and the parameters
    (see JobSubmission). Validates the images and parameters, stores the images and queues the job; answers
    at once (or, with `Prefer: wait=N`, once the job has ended or N seconds have passed), with the job's URL in
    Location."""
    with uploads.holding(caller.identity):  # before a byte of the body is read
        async with form_data(request, max_file_bytes=settings.max_upload_bytes) as form:
            submitted = await submissions.submit(
                read_job_form(form), owner=caller.owner, idempotency_key=idempotency_key
            )
    record, position = submitted.record, submitted.queue_position
    response.headers["Location"] = f"/jobs/{record.id}"
    wait_s = requested_wait_s(prefer)
    if wait_s is not None and not record.status.terminal:
        # A wait holds a Redis connection as an event stream does, so it counts under the same cap; with no
        # place free the job is answered at once, as without the preference (it is queued either way).
        with holds.holding_if_free(caller.holder(record)) as placed:
            if placed:
                waited = await wait_for_end(async_redis, store, record.id, timeout_s=wait_s)
                response.headers["Preference-Applied"] = f"wait={wait_s:g}"
                if waited is not None:
                    record, position = waited, position if waited.status is JobStatus.QUEUED else None
    if record.status.terminal:
        response.status_code = 200
    else:
        response.headers["Retry-After"] = "1"
    return public_job(record, queue_position=position, token=_token(record, keys))


@router.get(
    "",
    response_model=JobList,
    operation_id="list_jobs",
    summary="Recent jobs, newest first",
    responses=error_responses(401, 422, 429, 503),
)
def list_jobs(
    store: StoreDep,
    queue: QueueDep,
    caller: KeyCallerDep,
    keys: KeysDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobList:
    """With API keys on, only the caller's own jobs."""
    records, total = store.recent(offset=offset, limit=limit, owner=caller.owner if keys.enabled else None)
    positions = queue_positions(queue, records)
    return JobList(
        items=[public_job(r, queue_position=positions.get(r.id), token=_token(r, keys)) for r in records],
        total=total,
        offset=offset,
        limit=limit,
    )


@router.get(
    "/{job_id}",
    response_model=JobPublic,
    operation_id="get_job",
    summary="A job's status and progress",
    responses={
        304: {"description": "Not modified since the ETag sent in If-None-Match"},
        **error_responses(401, 404, 422, 429, 503),
    },
)
async def get_job(
    job_id: JobIdDep, request: Request, reader: JobReaderDep, caller: KeyCallerDep, keys: KeysDep
) -> Response:
    """Cheap to poll: send the ETag back in If-None-Match and get 304 while nothing changed."""
    found = await reader.read(job_id)
    if found is None:
        raise not_found(job_id)
    caller.may_read(found.record, keys)
    etag = f'{found.etag[:-1]}.{keys.link_period()}"' if keys.enabled else found.etag  # signed links expire
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    body = public_job(found.record, queue_position=found.queue_position, token=_token(found.record, keys))
    return Response(
        body.model_dump_json(), media_type="application/json", headers={"ETag": etag, "Cache-Control": "no-cache"}
    )


EVENTS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "Server-Sent Events, each `id:` (resume with Last-Event-ID), `event:` and `data:` (JSON):\n\n"
            "- `snapshot`: the job as `GET /jobs/{job_id}` answers it, first on every connection\n"
            '- `status`: `{"status", ...}` on every status change\n'
            '- `progress`: `{"step", "steps", "fraction", "losses", "eta_s", ...}` after every step\n'
            '- `preview`: `{"step", "url"}` when a new preview image is ready\n'
            '- `frame`: `{"frame", "frames"}` when a clip\'s frame is painted and stored (docs/video.md)\n'
            "- `completed`: the whole job, once it has ended; the stream closes after it\n\n"
            "A comment line (`: keep-alive`) comes every NST_SSE_KEEPALIVE_S seconds while nothing happens."
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/{job_id}/events",
    operation_id="stream_events",
    summary="Server-Sent Events of a job",
    response_class=StreamingResponse,
    responses={**EVENTS, **error_responses(401, 404, 422, 429, 503)},
)
async def stream_events(
    job_id: JobIdDep,
    request: Request,
    store: StoreDep,
    queue: QueueDep,
    async_redis: AsyncRedisDep,
    settings: SettingsDep,
    caller: LinkCallerDep,
    keys: KeysDep,
    holds: HoldsDep,
    last_event_id: Annotated[str | None, Header()] = None,
    last_event_id_query: Annotated[str | None, Query(alias="last_event_id")] = None,
) -> StreamingResponse:
    """`snapshot` first, then `status`, `progress`, `preview`, and `completed` (the whole job) at the end.
    Event ids come from the job's Redis stream: reconnect with Last-Event-ID (or ?last_event_id=, for
    browsers opening a new EventSource) to resume without loss. With API keys on, a browser passes the
    signed `?token=` from the job's links instead of the key."""
    record = await asyncio.to_thread(_load, store, job_id, caller, keys)
    token = _token(record, keys)
    position = await asyncio.to_thread(_queue_position, queue, record)  # an O(queue) LPOS: off the loop
    snapshot = public_job(record, queue_position=position, token=token)
    # Counted per owner: a signed link's streams count against the key that made the job.
    hold = holds.acquire(caller.holder(record))
    stream = job_event_stream(
        request,
        async_redis,
        store,
        job_id,
        snapshot=snapshot,
        token=token,
        last_event_id=last_event_id or last_event_id_query or "0",
        keepalive_s=settings.sse_keepalive_s,
    )
    return StreamingResponse(
        held_stream(stream, hold),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(hold.release),
    )


@router.get(
    "/{job_id}/result",
    operation_id="get_result",
    summary="The finished picture (in the job's format, or another its Accept names)",
    response_class=Response,
    responses={
        **image_response("The picture, or a clip's video (its poster for Accept: image/png)", clips=True),
        **error_responses(401, 404, 409, 422, 429, 503),
    },
)
def get_result(
    job_id: JobIdDep, request: Request, store: StoreDep, storage: StorageDep, caller: LinkCallerDep, keys: KeysDep
) -> Response:
    """409 while the job is queued or running (`result_not_ready`) and when it failed or was canceled
    (`no_result`); 404 `result_expired` once the file is gone."""
    record = _load(store, job_id, caller, keys)
    if record.status is not JobStatus.SUCCEEDED:
        reason = {
            JobStatus.QUEUED: "the job is still queued",
            JobStatus.RUNNING: "the job is still running",
            JobStatus.FAILED: "the job failed",
            JobStatus.CANCELED: "the job was canceled",
        }[record.status]
        raise ApiError(
            409,
            "result_not_ready" if record.status in (JobStatus.QUEUED, JobStatus.RUNNING) else "no_result",
            f"no result: {reason}",
        )
    if record.kind == "video":
        accept, range_header = request.headers.get("accept"), request.headers.get("range")
        return clips.clip_result(storage, record, accept=accept, range_header=range_header)
    job_format, quality = output_of(record.extra)
    choice = results.choose(request.headers.get("accept"), job_format)
    name = results.result_file(storage, job_id, record.result_file, format=choice.format, quality=quality)
    stored = storage.open(job_id, name) if name is not None else None
    if stored is None:
        raise ApiError(404, "result_expired", "the result file is gone (expired or deleted)")
    headers = {"Content-Disposition": f'attachment; filename="nst-{job_id}.{choice.format}"', "Vary": "Accept"}
    return file_response(
        stored, range_header=request.headers.get("range"), media_type=choice.media_type, headers=headers
    )


@router.get(
    "/{job_id}/preview",
    operation_id="get_preview",
    summary="The latest preview (WebP, or another format its Accept names)",
    response_class=Response,
    responses={**image_response("The latest preview", first="webp"), **error_responses(401, 404, 422, 429, 503)},
)
def get_preview(
    job_id: JobIdDep, request: Request, store: StoreDep, storage: StorageDep, caller: LinkCallerDep, keys: KeysDep
) -> Response:
    """404 `no_preview` until the first preview (ask for previews with `preview_every`)."""
    record = _load(store, job_id, caller, keys)
    data = storage.get(job_id, record.preview_file)  # the running (or last) attempt's
    stored_format = record.preview_file.rsplit(".", 1)[-1]
    if data is None:
        raise ApiError(404, "no_preview", "no preview yet (ask for one with preview_every)")
    choice = results.choose(request.headers.get("accept"), stored_format)
    if choice.format != stored_format:
        data = results.encoded_as(data, format=choice.format, quality=PREVIEW_QUALITY)
    return Response(data, media_type=choice.media_type, headers={"Cache-Control": "no-cache", "Vary": "Accept"})


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    status_code=202,
    operation_id="cancel_job",
    summary="Cancel a queued or running job",
    responses=error_responses(401, 404, 409, 422, 429, 503),
)
def cancel_job(job_id: JobIdDep, store: StoreDep, queue: QueueDep, caller: KeyCallerDep, keys: KeysDep) -> JobPublic:
    """Queued: canceled at once. Running: stops within one iteration. Finished: 409."""
    record = _load(store, job_id, caller, keys)
    if not job_control.cancel(store, queue, record):
        record = _load(store, job_id, caller, keys)
        raise ApiError(409, "job_finished", f"the job has already {record.status.value}")
    return _public(_load(store, job_id, caller, keys), keys)


@router.post(
    "/{job_id}/finish",
    response_model=JobPublic,
    status_code=202,
    operation_id="finish_job",
    summary="Finish a running job now, keeping its latest picture",
    responses=error_responses(401, 404, 409, 422, 429, 503),
)
def finish_job(job_id: JobIdDep, store: StoreDep, caller: KeyCallerDep, keys: KeysDep) -> JobPublic:
    """Running: stops after its current step and succeeds with the latest picture as its result (at the full
    size, also when it stops on a coarse scale), `steps_done` saying how far it got. Queued (no picture yet:
    cancel it instead) or finished: 409."""
    record = _load(store, job_id, caller, keys)
    if record.status is JobStatus.QUEUED:
        raise ApiError(
            409, "job_not_started", "the job is still queued: there is no picture to keep yet (cancel it instead)"
        )
    if record.status in TERMINAL:
        raise ApiError(409, "job_finished", f"the job has already {record.status.value}")
    store.request_finish(job_id)
    return _public(_load(store, job_id, caller, keys), keys)


@router.delete(
    "/{job_id}",
    status_code=200,
    response_model=Deleted,
    operation_id="delete_job",
    summary="Delete a job and its files",
    responses=error_responses(401, 404, 422, 429, 503),
)
def delete_job(
    job_id: JobIdDep, store: StoreDep, storage: StorageDep, queue: QueueDep, caller: KeyCallerDep, keys: KeysDep
) -> Deleted:
    job_control.delete(store, storage, queue, _load(store, job_id, caller, keys))
    return Deleted(id=job_id, deleted=True)
