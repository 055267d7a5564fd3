"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from nst_shared.worker_info import live_workers
from service.deps import RedisDep
from service.errors import error_body

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The API process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Redis answers and at least one worker is alive; what each worker runs on")
def readyz(redis: RedisDep) -> JSONResponse:
    try:
        redis.ping()
        workers = live_workers(redis)
    except Exception as exc:  # any Redis failure means not ready
        return JSONResponse(error_body("redis_unavailable", f"Redis is not reachable: {exc}"), 503)
    if not workers:
        return JSONResponse({**error_body("no_workers", "no worker is running"), "workers": 0}, 503)
    return JSONResponse({"status": "ready", "redis": "ok", "workers": len(workers), "engines": workers})
