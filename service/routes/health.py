"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from nst_shared.presence import live_workers
from service.deps import RedisDep
from service.errors import error_body
from service.openapi import error_responses

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class WorkerEngine(BaseModel):
    """What one live worker runs on (nst_shared.presence)."""

    name: str
    device: str
    precision: str
    precision_reason: str
    gpu: str


class Readiness(BaseModel):
    status: str
    redis: str
    workers: int
    engines: list[WorkerEngine]


@router.get("/healthz", response_model=Health, operation_id="healthz", summary="The API process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    operation_id="readyz",
    responses=error_responses(503),
    summary="Redis answers; how many workers are alive and what each runs on",
)
def readyz(redis: RedisDep) -> JSONResponse:
    try:
        redis.ping()
        workers = live_workers(redis)
    except Exception as exc:  # any Redis failure means not ready
        return JSONResponse(error_body("redis_unavailable", f"Redis is not reachable: {exc}"), 503)
    # Ready with no worker alive too: jobs wait in the queue, and an autoscaler at zero workers needs the API up.
    return JSONResponse({"status": "ready", "redis": "ok", "workers": len(workers), "engines": workers})
