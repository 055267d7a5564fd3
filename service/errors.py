"""The API's errors: one exception type, and the handlers that turn every failure into JSON
`{"error": {"code", "message", "field"?}}` with the right status (never a bare 500 for client input)."""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from nst_shared.errors import ImageError, ImageTooLarge, InvalidParameter, UnsupportedImageFormat
from nst_shared.redis_outages import refuses_writes

log = logging.getLogger("nst.api")

METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


class ApiError(Exception):
    """Raised by handlers for any answer that is not a success; rendered by `api_error_handler`."""

    def __init__(
        self, status: int, code: str, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away before the answer


def not_found(job_id: str) -> ApiError:
    return ApiError(404, "job_not_found", f"no job {job_id!r} (unknown, deleted or expired)")


def sweep_not_found(sweep_id: str) -> ApiError:
    return ApiError(404, "sweep_not_found", f"no sweep {sweep_id!r} (unknown, deleted or expired)")


def from_image_error(exc: ImageError, field: str) -> ApiError:
    """415 for a format we refuse, 413 for too many pixels, 422 for anything unreadable or too small."""
    status = 415 if isinstance(exc, UnsupportedImageFormat) else 413 if isinstance(exc, ImageTooLarge) else 422
    return ApiError(status, exc.code, f"{field}: {exc}", field=field)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


def redis_down_response(exc: Exception) -> JSONResponse:
    """503 while Redis is unreachable (restarting) or refuses writes: the client is told to come back shortly."""
    log.warning("redis unavailable: %s", exc)
    return JSONResponse(
        error_body("redis_unavailable", "the job store is unavailable; try again shortly"),
        503,
        headers={"Retry-After": "5"},
    )


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at this path (Starlette's 405 names only the first route's).
    Each method is tried on the routes as the router itself would, so included routers count too."""
    return [
        method
        for method in METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.routes)
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error_handler(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.field), exc.status, headers=exc.headers)

    @app.exception_handler(InvalidParameter)
    async def invalid_parameter_handler(_: Request, exc: InvalidParameter) -> JSONResponse:
        return JSONResponse(error_body(exc.code, str(exc), exc.field), 422)

    @app.exception_handler(RequestValidationError)
    async def validation_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "header", "path")]
        field = ".".join(location) or None
        message = f"{field}: {first.get('msg', 'invalid')}" if field else first.get("msg", "invalid request")
        return JSONResponse(error_body("invalid_parameter", message, field), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            exc.status_code, "http_error"
        )
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=headers or None)

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def redis_down_handler(_: Request, exc: Exception) -> JSONResponse:
        return redis_down_response(exc)

    @app.exception_handler(ClientDisconnect)
    async def client_disconnect_handler(request: Request, _: Exception) -> Response:
        # The client left mid-request (nginx's 499): its doing, not a server error; the access line says it.
        request.app.state.counters.client_disconnects.inc()
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(redis.exceptions.ResponseError)
    async def redis_refusal_handler(request: Request, exc: Exception) -> JSONResponse:
        if refuses_writes(exc):  # out of disk (MISCONF) or memory (OOM): an outage, as Redis down is
            return redis_down_response(exc)
        return await internal_error_handler(request, exc)

    @app.exception_handler(Exception)
    async def internal_error_handler(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body("internal_error", "internal error"), 500)
