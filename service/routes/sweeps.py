"""/sweeps: submit a grid of jobs over one or two parameters, follow it, get its contact sheet, cancel or delete
every cell (HTTP only: a submission is service/sweep_submission.py's, the sheet service/contact_sheet.py's)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Header, Path, Request, Response

from nst_shared.job_options import DEFAULT_QUALITY
from nst_shared.job_status import JobStatus
from nst_shared.jobs import JOB_ID_PATTERN, JobRecord, is_job_id
from nst_shared.storage import Storage
from nst_shared.sweeps import SweepRecord, SweepStatus, SweepStore, status_of
from service import contact_sheet, job_control, results
from service.auth import Caller, KeyCallerDep, KeyRing, KeysDep, LinkCallerDep
from service.deps import (
    AsyncRedisDep,
    HoldsDep,
    QueueDep,
    SettingsDep,
    StorageDep,
    StoreDep,
    SubmissionsDep,
    UploadsDep,
)
from service.errors import ApiError, sweep_not_found
from service.forms import form_data
from service.openapi import PICTURE_ENCODING, error_responses, image_response
from service.schemas import Deleted
from service.sweep_schemas import SweepPublic, public_sweep
from service.sweep_submission import SweepSubmissions, read_sweep_form
from service.waiting import MAX_WAIT_S, requested_wait_s, wait_for_all

router = APIRouter(prefix="/sweeps", tags=["sweeps"])
SHEET = "sheet.png"


async def get_sweeps(request: Request) -> SweepStore:
    return cast(SweepStore, request.app.state.sweeps)  # Starlette's app.state holds Any


async def sweep_id_path(
    sweep_id: Annotated[
        str,
        Path(description="The sweep's id, as `POST /sweeps` gave it.", json_schema_extra={"pattern": JOB_ID_PATTERN}),
    ],
) -> str:
    """404 for an id that no sweep can have, before any Redis key is read (sweep ids are made as job ids are)."""
    if not is_job_id(sweep_id):
        raise sweep_not_found(sweep_id)
    return sweep_id


SweepsDep = Annotated[SweepStore, Depends(get_sweeps)]
SweepIdDep = Annotated[str, Depends(sweep_id_path)]


def _load(sweeps: SweepStore, sweep_id: str, caller: Caller, keys: KeyRing) -> SweepRecord:
    record = sweeps.get(sweep_id)
    if record is None:
        raise sweep_not_found(sweep_id)
    try:
        caller.may_read(record, keys)
    except ApiError as exc:
        raise sweep_not_found(sweep_id) if exc.status == 404 else exc from None
    return record


def _public(record: SweepRecord, cells: list[JobRecord | None], keys: KeyRing) -> SweepPublic:
    tokens = {}
    if keys.enabled:
        owner = record.owner or ""
        tokens = {item: keys.sign(item, owner) for item in [record.id, *record.job_ids]}
    return public_sweep(record, cells, tokens=tokens)


SWEEP_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"$ref": "#/components/schemas/SweepSubmission"},
                "encoding": PICTURE_ENCODING,
            }
        },
    }
}
LOCATION = {"Location": {"description": "The sweep's URL", "schema": {"type": "string"}}}
SWEEP_LINKS = {
    operation: {"operationId": operation, "parameters": {"sweep_id": "$response.body#/id"}}
    for operation in ("get_sweep", "get_sweep_sheet", "cancel_sweep", "delete_sweep")
}


@router.post(
    "",
    status_code=202,
    response_model=SweepPublic,
    operation_id="create_sweep",
    summary="Submit a sweep: one job per cell of a grid over one or two parameters",
    openapi_extra=SWEEP_BODY,
    responses={
        200: {
            "description": "Every cell has ended: while the request waited (`Prefer: wait=N`), or the earlier "
            "sweep of this Idempotency-Key had",
            "headers": {
                **LOCATION,
                "Preference-Applied": {"description": "wait=N, when it was", "schema": {"type": "string"}},
            },
            "links": SWEEP_LINKS,
        },
        202: {
            "description": "Queued: every cell a job of its own (or the earlier sweep of this Idempotency-Key), or "
            "cells still queued or running after the wait",
            "headers": LOCATION,
            "links": SWEEP_LINKS,
        },
        **error_responses(401, 413, 415, 422, 429, 503),
    },
)
async def create_sweep(
    request: Request,
    response: Response,
    submissions: SubmissionsDep,
    sweeps: SweepsDep,
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
            description="The same key with the same request answers with the same sweep; with another, 422.",
        ),
    ] = None,
    prefer: Annotated[
        str | None,
        Header(
            max_length=200,
            description=f"`wait=N` (RFC 7240; N at most {MAX_WAIT_S}): answer when every cell has ended (200) or "
            "after N seconds (202, as without it).",
        ),
    ] = None,
) -> SweepPublic:
    """The job form (see JobSubmission) plus `sweep`, once or twice: `name=v1,v2,...` (e.g. `style_weight=5,15,45`,
    `look=subtle,painterly`), at most NST_MAX_SWEEP_CELLS cells. Each cell is a job with the form's parameters and
    its values; the sweep counts as its cells against the submissions-per-minute limit, the queue's room and the
    step budget. With `Prefer: wait=N`, the answer waits as `POST /jobs`'s does, for every cell."""
    with uploads.holding(caller.identity):  # before a byte of the body is read, as for a job
        async with form_data(request, max_file_bytes=settings.max_upload_bytes) as form:
            record = await SweepSubmissions(submissions, sweeps).submit(
                read_sweep_form(form), owner=caller.owner, idempotency_key=idempotency_key
            )
    # The guard counted one submission before the body was read; the other cells count now.
    await request.app.state.rate_limiter.hit(
        "submissions", caller.identity, per_window=settings.rate_limit_submissions_per_min, count=len(record.cells) - 1
    )
    response.headers["Location"] = f"/sweeps/{record.id}"
    cells = await asyncio.to_thread(sweeps.cells, record)
    wait_s = requested_wait_s(prefer)
    if wait_s is not None and status_of(cells) is SweepStatus.RUNNING:
        # One place among the caller's streams and waits, as a job's wait takes; none free: answered at once.
        with holds.holding_if_free(caller.holder(record)) as placed:
            if placed:
                cells = await wait_for_all(async_redis, store, record.job_ids, timeout_s=wait_s)
                response.headers["Preference-Applied"] = f"wait={wait_s:g}"
    if status_of(cells) is not SweepStatus.RUNNING:
        response.status_code = 200
    return _public(record, cells, keys)


@router.get(
    "/{sweep_id}",
    response_model=SweepPublic,
    operation_id="get_sweep",
    summary="A sweep's cells and progress",
    responses=error_responses(401, 404, 422, 429, 503),
)
def get_sweep(sweep_id: SweepIdDep, sweeps: SweepsDep, caller: KeyCallerDep, keys: KeysDep) -> SweepPublic:
    """Each cell's job id, status and step; `progress` counts the cells by status. Each cell's own events,
    result and preview are its job's (`/jobs/{job_id}/...`)."""
    record = _load(sweeps, sweep_id, caller, keys)
    return _public(record, sweeps.cells(record), keys)


@router.get(
    "/{sweep_id}/sheet",
    operation_id="get_sweep_sheet",
    summary="The contact sheet (PNG): every cell's result, labelled with its values",
    response_class=Response,
    responses={
        **image_response("The sheet (PNG, or another format its Accept names)"),
        **error_responses(401, 404, 409, 422, 429, 503),
    },
)
def get_sweep_sheet(
    sweep_id: SweepIdDep,
    request: Request,
    sweeps: SweepsDep,
    storage: StorageDep,
    caller: LinkCallerDep,
    keys: KeysDep,
) -> Response:
    """409 `sweep_not_done` while a cell is queued or running, `no_result` when no cell succeeded. A cell that
    failed or was canceled is a grey tile naming its status. The sheet carries the sweep's provenance: the
    shared parameters, the axes and every cell's own record."""
    record = _load(sweeps, sweep_id, caller, keys)
    data = storage.get(record.id, SHEET)
    if data is None:
        data = _make_sheet(record, sweeps.cells(record), storage)
        storage.put(record.id, SHEET, data)
    choice = results.choose(request.headers.get("accept"), "png")
    if choice.format != "png":
        data = results.encoded_as(data, format=choice.format, quality=DEFAULT_QUALITY)
    disposition = f'inline; filename="sweep-{sweep_id}.{choice.format}"'
    return Response(data, media_type=choice.media_type, headers={"Content-Disposition": disposition, "Vary": "Accept"})


def _make_sheet(record: SweepRecord, jobs: list[JobRecord | None], storage: Storage) -> bytes:
    if status_of(jobs) is SweepStatus.RUNNING:
        raise ApiError(409, "sweep_not_done", "the sweep's cells are still queued or running")
    cells = [
        contact_sheet.Cell(
            values=cell["values"],
            job_id=cell["job_id"],
            status=job.status.value if job is not None else "gone",
            result=storage.get(cell["job_id"], job.result_file) if job and job.status is JobStatus.SUCCEEDED else None,
        )
        for cell, job in zip(record.cells, jobs, strict=True)
    ]
    if not any(cell.result for cell in cells):
        raise ApiError(409, "no_result", "no cell of the sweep has a result")
    return contact_sheet.build(record, cells)


@router.post(
    "/{sweep_id}/cancel",
    response_model=SweepPublic,
    status_code=202,
    operation_id="cancel_sweep",
    summary="Cancel every cell that has not ended",
    responses=error_responses(401, 404, 422, 429, 503),
)
def cancel_sweep(
    sweep_id: SweepIdDep, sweeps: SweepsDep, store: StoreDep, queue: QueueDep, caller: KeyCallerDep, keys: KeysDep
) -> SweepPublic:
    """Queued cells are canceled at once, running ones stop within one iteration; ended cells stay as they are."""
    record = _load(sweeps, sweep_id, caller, keys)
    for job in sweeps.cells(record):
        if job is not None and not job.status.terminal:
            job_control.cancel(store, queue, job)
    return _public(record, sweeps.cells(record), keys)


@router.delete(
    "/{sweep_id}",
    response_model=Deleted,
    operation_id="delete_sweep",
    summary="Delete the sweep, every cell's job and their files",
    responses=error_responses(401, 404, 422, 429, 503),
)
def delete_sweep(
    sweep_id: SweepIdDep,
    sweeps: SweepsDep,
    store: StoreDep,
    storage: StorageDep,
    queue: QueueDep,
    caller: KeyCallerDep,
    keys: KeysDep,
) -> Deleted:
    record = _load(sweeps, sweep_id, caller, keys)
    for job in sweeps.cells(record):
        if job is not None:
            job_control.delete(store, storage, queue, job)
    sweeps.delete(record.id)
    storage.delete_job(record.id)
    return Deleted(id=sweep_id, deleted=True)
