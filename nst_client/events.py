"""A job's Server-Sent Events (decoded by httpx-sse), followed by iterators that reconnect after a dropped
connection with `Last-Event-ID`, so no event is lost or repeated."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent

from nst_client.errors import ApiError, ServiceUnavailable, TransportError, WaitTimeout, error_for
from nst_client.jobs import Job, Progress
from nst_shared.job_status import JobStatus

# The service sends a keep-alive comment every 15 s (NST_SSE_KEEPALIVE_S): a connection silent for this
# long is dead (a proxy or a NAT dropped it without closing it) and is reopened.
IDLE_TIMEOUT_S = 45.0
_STATUSES = {s.value for s in JobStatus}


@dataclass(frozen=True)
class Event:
    """One event: `type` is `snapshot`, `status`, `progress`, `preview`, `frame` (a clip's) or `completed`;
    `data` its JSON.

    `id` is the position in the job's event stream, as EventSource's lastEventId: None for `snapshot`, which
    the service sends first on every connection, so after a reconnect a fresh snapshot comes again."""

    type: str
    data: dict[str, Any]
    id: str | None = None

    @property
    def job(self) -> Job | None:
        """The whole job, for `snapshot` and `completed` (None when the job was deleted meanwhile)."""
        if self.type in ("snapshot", "completed") and self.data.get("status") in _STATUSES:
            return Job.from_json(self.data)
        return None

    @property
    def progress(self) -> Progress | None:
        return Progress.from_json(self.data) if self.type == "progress" else None


def _event(sse: ServerSentEvent) -> Event | None:
    """Our `Event` of a decoded one; None for one without data (the service's `retry:` advice comes so)."""
    if not sse.data:
        return None
    try:
        data = json.loads(sse.data)
    except ValueError:
        data = {"text": sse.data}
    return Event(sse.event, data if isinstance(data, dict) else {"value": data}, sse.id or None)


@dataclass(frozen=True)
class _Attempt:
    """What one connection needs: its headers and its read timeout (never past the caller's deadline)."""

    headers: dict[str, str]
    timeout: httpx.Timeout


def _attempt(
    job_id: str, last_event_id: str | None, deadline: float | None, clock: Callable[[], float], timeout_s: float | None
) -> _Attempt:
    read_s = IDLE_TIMEOUT_S
    if deadline is not None:
        left = deadline - clock()
        if left <= 0:
            raise WaitTimeout(f"job {job_id} did not end within {timeout_s:g} s", job_id=job_id)
        read_s = min(read_s, left)
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    return _Attempt(headers, httpx.Timeout(30.0, read=read_s))


def _past(deadline: float | None, clock: Callable[[], float]) -> bool:
    return deadline is not None and clock() >= deadline


def _delay_s(failures: int, retry_s: float | None, backoff_s: float) -> float:
    base = retry_s if retry_s is not None else backoff_s
    return min(base * 2.0 ** (failures - 1), 10.0)


def _response_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return error_for(response.status_code, body, retry_after=response.headers.get("Retry-After"))


def iter_events(
    http: httpx.Client,
    job_id: str,
    *,
    last_event_id: str | None = None,
    timeout_s: float | None = None,
    retries: int = 5,
    backoff_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Event]:
    """The job's events until `completed`, reconnecting (up to `retries` times in a row, with exponential
    backoff) when the connection breaks, goes silent or the service is briefly unavailable.

    Raises `JobNotFound`, `WaitTimeout` after `timeout_s`, `TransportError` when the retries run out."""
    deadline = None if timeout_s is None else clock() + timeout_s
    failures = 0
    retry_s: float | None = None  # the service's `retry:` advice, used as the reconnect delay
    while True:
        attempt = _attempt(job_id, last_event_id, deadline, clock, timeout_s)
        try:
            with http.stream(
                "GET", f"/jobs/{job_id}/events", headers=attempt.headers, timeout=attempt.timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _response_error(response)
                for sse in EventSource(response).iter_sse():
                    retry_s = sse.retry / 1000 if sse.retry is not None else retry_s
                    event = _event(sse)
                    if event is not None:
                        failures = 0
                        if event.id:
                            last_event_id = event.id
                        yield event
                        if event.type == "completed":
                            return
                    if _past(deadline, clock):
                        raise WaitTimeout(f"job {job_id} did not end within {timeout_s:g} s", job_id=job_id)
            reason = "the stream ended before the job did"
        except ServiceUnavailable as exc:
            reason = str(exc)
        except httpx.TransportError as exc:  # refused, reset, read timeout, broken chunking, not an event stream
            if _past(deadline, clock):
                raise WaitTimeout(f"job {job_id} did not end within {timeout_s:g} s", job_id=job_id) from None
            reason = f"{type(exc).__name__}: {exc}"
        failures += 1
        if failures > retries:
            raise TransportError(f"the event stream of job {job_id} keeps failing ({reason})")
        sleep(_delay_s(failures, retry_s, backoff_s))


async def aiter_events(
    http: httpx.AsyncClient,
    job_id: str,
    *,
    last_event_id: str | None = None,
    timeout_s: float | None = None,
    retries: int = 5,
    backoff_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Event]:
    """`iter_events` for asyncio."""
    deadline = None if timeout_s is None else clock() + timeout_s
    failures = 0
    retry_s: float | None = None  # the service's `retry:` advice, used as the reconnect delay
    while True:
        attempt = _attempt(job_id, last_event_id, deadline, clock, timeout_s)
        try:
            async with http.stream(
                "GET", f"/jobs/{job_id}/events", headers=attempt.headers, timeout=attempt.timeout
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _response_error(response)
                async for sse in EventSource(response).aiter_sse():
                    retry_s = sse.retry / 1000 if sse.retry is not None else retry_s
                    event = _event(sse)
                    if event is not None:
                        failures = 0
                        if event.id:
                            last_event_id = event.id
                        yield event
                        if event.type == "completed":
                            return
                    if _past(deadline, clock):
                        raise WaitTimeout(f"job {job_id} did not end within {timeout_s:g} s", job_id=job_id)
            reason = "the stream ended before the job did"
        except ServiceUnavailable as exc:
            reason = str(exc)
        except httpx.TransportError as exc:
            if _past(deadline, clock):
                raise WaitTimeout(f"job {job_id} did not end within {timeout_s:g} s", job_id=job_id) from None
            reason = f"{type(exc).__name__}: {exc}"
        failures += 1
        if failures > retries:
            raise TransportError(f"the event stream of job {job_id} keeps failing ({reason})")
        await asyncio.sleep(_delay_s(failures, retry_s, backoff_s))
