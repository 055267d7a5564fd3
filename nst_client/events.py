"""A job's Server-Sent Events: a text/event-stream decoder, and iterators that reconnect after a dropped
connection with `Last-Event-ID`, so no event is lost or repeated."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator

import httpx

from nst_client.errors import ApiError, ServiceUnavailable, TransportError, WaitTimeout, error_for
from nst_client.jobs import Job, JobStatus, Progress

# The service sends a keep-alive comment every 15 s (NST_SSE_KEEPALIVE_S): a connection silent for this
# long is dead (a proxy or a NAT dropped it without closing it) and is reopened.
IDLE_TIMEOUT_S = 45.0
_STATUSES = {s.value for s in JobStatus}


@dataclass(frozen=True)
class Event:
    """One event: `type` is `snapshot`, `status`, `progress`, `preview` or `completed`; `data` its JSON.

    `id` is the position in the job's event stream (None for `snapshot`, which the service sends first on
    every connection, so after a reconnect a fresh snapshot comes again)."""

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


class SSEDecoder:
    """Turns the lines of a text/event-stream into `Event`s (the WHATWG rules this service needs)."""

    def __init__(self) -> None:
        self.retry_s: float | None = None  # the server's `retry:` advice, used as the reconnect delay
        self._reset()

    def _reset(self) -> None:
        self._id: str | None = None
        self._type = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        """One line without its end; returns an Event when a blank line completes one."""
        if line == "":
            event = None
            if self._data:
                text = "\n".join(self._data)
                try:
                    data = json.loads(text)
                except ValueError:
                    data = {"text": text}
                event = Event(self._type, data if isinstance(data, dict) else {"value": data}, self._id)
            self._reset()
            return event
        if line.startswith(":"):  # a comment: the keep-alive
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id" and "\0" not in value:
            self._id = value
        elif name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "retry" and value.isdigit():
            self.retry_s = int(value) / 1000
        return None


@dataclass(frozen=True)
class _Attempt:
    """What one connection needs: its headers and its read timeout (never past the caller's deadline)."""

    headers: dict[str, str]
    timeout: httpx.Timeout


def _attempt(job_id: str, last_event_id: str | None, deadline: float | None, clock: Callable[[], float],
             timeout_s: float | None) -> _Attempt:
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


def _delay_s(failures: int, decoder: SSEDecoder | None, backoff_s: float) -> float:
    base = decoder.retry_s if decoder and decoder.retry_s is not None else backoff_s
    return min(base * 2 ** (failures - 1), 10.0)


def _response_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return error_for(response.status_code, body, retry_after=response.headers.get("Retry-After"))


def iter_events(http: httpx.Client, job_id: str, *, last_event_id: str | None = None,
                timeout_s: float | None = None, retries: int = 5, backoff_s: float = 0.5,
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> Iterator[Event]:
    """The job's events until `completed`, reconnecting (up to `retries` times in a row, with exponential
    backoff) when the connection breaks, goes silent or the service is briefly unavailable.

    Raises `JobNotFound`, `WaitTimeout` after `timeout_s`, `TransportError` when the retries run out."""
    deadline = None if timeout_s is None else clock() + timeout_s
    failures = 0
    while True:
        attempt = _attempt(job_id, last_event_id, deadline, clock, timeout_s)
        decoder: SSEDecoder | None = None
        try:
            with http.stream("GET", f"/jobs/{job_id}/events", headers=attempt.headers,
                             timeout=attempt.timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _response_error(response)
                decoder = SSEDecoder()
                for line in response.iter_lines():
                    event = decoder.feed(line)
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
        except httpx.TransportError as exc:  # connection refused or reset, read timeout, broken chunking
            if _past(deadline, clock):
                raise WaitTimeout(f"job {job_id} did not end within {timeout_s:g} s", job_id=job_id) from None
            reason = f"{type(exc).__name__}: {exc}"
        failures += 1
        if failures > retries:
            raise TransportError(f"the event stream of job {job_id} keeps failing ({reason})")
        sleep(_delay_s(failures, decoder, backoff_s))


async def aiter_events(http: httpx.AsyncClient, job_id: str, *, last_event_id: str | None = None,
                       timeout_s: float | None = None, retries: int = 5, backoff_s: float = 0.5,
                       clock: Callable[[], float] = time.monotonic) -> AsyncIterator[Event]:
    """`iter_events` for asyncio."""
    deadline = None if timeout_s is None else clock() + timeout_s
    failures = 0
    while True:
        attempt = _attempt(job_id, last_event_id, deadline, clock, timeout_s)
        decoder: SSEDecoder | None = None
        try:
            async with http.stream("GET", f"/jobs/{job_id}/events", headers=attempt.headers,
                                   timeout=attempt.timeout) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _response_error(response)
                decoder = SSEDecoder()
                async for line in response.aiter_lines():
                    event = decoder.feed(line)
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
        await asyncio.sleep(_delay_s(failures, decoder, backoff_s))
