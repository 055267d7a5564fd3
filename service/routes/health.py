"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from nst_shared.presence import live_workers
from service.deps import RedisDep
from service.errors import ApiError, error_body
from service.openapi import error_responses
from service.routes.metrics import check_scraper

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
    summary="Redis answers and at least one worker is alive; what each worker runs on",
)
def readyz(request: Request, redis: RedisDep) -> JSONResponse:
    """With API keys on (or a metrics token set), who may not read /metrics learns ready or not and no more:
    the workers' devices, memory and Redis's errors are details for operators."""
    answer = _readiness(redis)
    try:
        check_scraper(request)
    except ApiError:
        return JSONResponse({"status": "ready" if answer.status_code == 200 else "not_ready"}, answer.status_code)
    return answer


def _readiness(redis: RedisDep) -> JSONResponse:
    try:
        redis.ping()
        workers = live_workers(redis)
    except Exception as exc:  # any Redis failure means not ready
        return JSONResponse(error_body("redis_unavailable", f"Redis is not reachable: {exc}"), 503)
    if not workers:
        return JSONResponse({**error_body("no_workers", "no worker is running"), "workers": 0}, 503)
    return JSONResponse({"status": "ready", "redis": "ok", "workers": len(workers), "engines": workers})
