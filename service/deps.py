"""Dependencies: what a route may ask for, built from the app's settings (set by `create_app`).

Each is `async def` although none awaits: FastAPI runs a plain `def` dependency in its thread pool, a hop
that costs more than the dependency itself."""

from __future__ import annotations

from typing import Annotated, cast

import redis
import redis.asyncio as aioredis
from fastapi import Depends, Path, Request
from rq import Queue

from nst_shared.jobs import JOB_ID_PATTERN, JobStore, is_job_id
from nst_shared.settings import Settings
from nst_shared.storage import Storage
from service.errors import not_found
from service.holds import HoldLimiter
from service.job_reads import JobReader
from service.submission import Submissions


# Starlette's app.state holds Any: each getter casts to what create_app put there.
async def get_app_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_redis(request: Request) -> redis.Redis:
    return cast(redis.Redis, request.app.state.redis)


async def get_async_redis(request: Request) -> aioredis.Redis:
    return cast(aioredis.Redis, request.app.state.async_redis)


async def get_store(request: Request) -> JobStore:
    return cast(JobStore, request.app.state.store)


async def get_storage(request: Request) -> Storage:
    return cast(Storage, request.app.state.storage)


async def get_queue(request: Request) -> Queue:
    return cast(Queue, request.app.state.queue)


async def get_holds(request: Request) -> HoldLimiter:
    return cast(HoldLimiter, request.app.state.holds)


async def get_uploads(request: Request) -> HoldLimiter:
    return cast(HoldLimiter, request.app.state.uploads)


async def get_job_reader(request: Request) -> JobReader:
    return cast(JobReader, request.app.state.job_reader)


async def job_id_path(
    job_id: Annotated[
        str, Path(description="The job's id, as `POST /jobs` gave it.", json_schema_extra={"pattern": JOB_ID_PATTERN})
    ],
) -> str:
    """404 for an id `new_job_id` cannot have made, before any of the job's Redis keys is read."""
    if not is_job_id(job_id):
        raise not_found(job_id)
    return job_id


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
AsyncRedisDep = Annotated[aioredis.Redis, Depends(get_async_redis)]
StoreDep = Annotated[JobStore, Depends(get_store)]
StorageDep = Annotated[Storage, Depends(get_storage)]
QueueDep = Annotated[Queue, Depends(get_queue)]
JobReaderDep = Annotated[JobReader, Depends(get_job_reader)]
JobIdDep = Annotated[str, Depends(job_id_path)]
HoldsDep = Annotated[HoldLimiter, Depends(get_holds)]
UploadsDep = Annotated[HoldLimiter, Depends(get_uploads)]


async def get_submissions(
    request: Request, settings: SettingsDep, store: StoreDep, storage: StorageDep, queue: QueueDep
) -> Submissions:
    refusals = request.app.state.counters.storage_refusals
    return Submissions(
        settings=settings,
        store=store,
        storage=storage,
        queue=queue,
        on_storage_refused=lambda code: refusals.labels(code).inc(),
    )


SubmissionsDep = Annotated[Submissions, Depends(get_submissions)]
