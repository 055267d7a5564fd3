"""Request ids and one log line per request: `X-Request-ID` is taken from the client (or made) and echoed,
and every log line written while the request is handled carries it (with the job id of /jobs/{id} paths)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nst_shared.logs import current_job_id, current_request_id

log = logging.getLogger("nst.access")

HEADER = "X-Request-ID"
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")  # anything else (or none) gets a fresh id
_JOB_PATH = re.compile(r"^/jobs/([A-Za-z0-9_.-]+)")
_QUIET = {"/healthz", "/readyz", "/metrics"}  # probes and scrapes: logged at DEBUG only


class RequestIds:
    """ASGI middleware: request id in, out and on every log line; an access line when the answer ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(HEADER.lower().encode(), b"").decode("latin-1")
        request_id = given if _ACCEPTED.match(given) else uuid.uuid4().hex
        path = scope.get("path", "")
        match = _JOB_PATH.match(path)
        seen: dict[str, object] = {"status": 500, "job_id": match.group(1) if match else None}
        request_token = current_request_id.set(request_id)
        job_token = current_job_id.set(seen["job_id"])  # type: ignore[arg-type]
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[HEADER] = request_id
                seen["status"] = message["status"]
                created = _JOB_PATH.match(headers.get("location", ""))
                if created and seen["job_id"] is None:  # POST /jobs: the new job's id
                    seen["job_id"] = created.group(1)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.log(
                logging.DEBUG if path in _QUIET else logging.INFO,
                "%s %s %s",
                scope.get("method"),
                path,
                seen["status"],
                extra={
                    "job_id": seen["job_id"],
                    "method": scope.get("method"),
                    "path": path,
                    "status": seen["status"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            current_job_id.reset(job_token)
            current_request_id.reset(request_token)
