"""Checks every /jobs and /sweeps request's API key and rate limits from its headers alone, before its body is read:
a stranger without a key, or over the limit, never gets an upload parsed. Wrong keys are counted per client
address, and an address past its limit is refused before its key is checked, so keys cannot be guessed at
full speed."""

from __future__ import annotations

import re

import redis
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from nst_shared.redis_outages import is_redis_outage
from service.auth import authenticate, client_ip
from service.errors import ApiError, error_body, redis_down_response

# The read-only URLs a browser opens by link (EventSource, <img>, downloads): a signed token is enough there.
_LINK_PATH = re.compile(r"^/jobs/[^/]+/(events|result|preview)$|^/sweeps/[^/]+/sheet$")
GUARDED = ("/jobs", "/sweeps")


class AccessGuard:
    """ASGI middleware for /jobs and /sweeps: 401 without an accepted key (when keys are on), 429 over a rate limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not any(path == root or path.startswith(f"{root}/") for root in GUARDED):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        state = request.app.state
        limiter, settings = state.rate_limiter, state.settings
        address, failures_per_min = f"ip:{client_ip(request)}", settings.rate_limit_auth_failures_per_min
        try:
            if state.keys.enabled:
                await limiter.check("auth_failures", address, per_window=failures_per_min)
            try:
                caller = authenticate(request, links=request.method == "GET" and bool(_LINK_PATH.match(path)))
            except ApiError as exc:
                if exc.code == "invalid_api_key":
                    await limiter.hit("auth_failures", address, per_window=failures_per_min)
                raise
            await limiter.hit("requests", caller.identity, per_window=settings.rate_limit_requests_per_min)
            if request.method == "POST" and path in GUARDED:  # a sweep's other cells count in its route
                await limiter.hit("submissions", caller.identity, per_window=settings.rate_limit_submissions_per_min)
        except ApiError as exc:
            response = JSONResponse(error_body(exc.code, exc.message, exc.field), exc.status, headers=exc.headers)
            await response(scope, receive, send)
            return
        except redis.exceptions.RedisError as exc:
            if not is_redis_outage(exc):
                raise
            await redis_down_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)
