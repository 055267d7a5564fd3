"""Sync and async clients: submit, get, follow events (SSE with reconnect and Last-Event-ID), wait, download,
cancel, delete and list jobs."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

import httpx

from nst_client.errors import TransportError, WaitTimeout, error_for

ImageInput = str | Path | bytes
TERMINAL = {"succeeded", "failed", "canceled"}


@dataclass(frozen=True)
class Job:
    """A job as the API shows it; `raw` keeps every field."""

    id: str
    status: str
    progress: dict[str, Any] | None
    error: dict[str, Any] | None
    queue_position: int | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Job":
        return cls(id=data["id"], status=data["status"], progress=data.get("progress"),
                   error=data.get("error"), queue_position=data.get("queue_position"), raw=data)


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: `type` is snapshot, status, progress, preview or completed."""

    id: str | None
    type: str
    data: dict[str, Any]


def _file(value: ImageInput, name: str) -> tuple[str, bytes]:
    if isinstance(value, bytes):
        return name, value
    path = Path(value)
    return path.name, path.read_bytes()


def _form(params: dict[str, Any]) -> dict[str, str]:
    form = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            form[key] = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            form[key] = ",".join(str(v) for v in value)
        else:
            form[key] = str(value)
    return form


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise error_for(response.status_code, body)
    return response


class _SSEParser:
    """Feeds lines of a text/event-stream; `feed` returns an Event when a blank line completes one."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._type, self._data = "message", []  # type: ignore[var-annotated]

    def feed(self, line: str) -> Event | None:
        if line == "":
            event = Event(self._id, self._type, json.loads("\n".join(self._data))) if self._data else None
            self._id, self._type, self._data = None, "message", []
            return event
        if not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                self._id = value
            elif name == "event":
                self._type = value
            elif name == "data":
                self._data.append(value)
        return None


class NstClient:
    """Synchronous client. `transport` is httpx's, injectable for tests; `api_key` goes in X-API-Key."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout_s: float = 60.0, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s, transport=transport)

    def __enter__(self) -> "NstClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return _check(self._http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise TransportError(f"cannot reach the service: {exc}") from exc

    def submit(self, content: ImageInput, styles: Sequence[ImageInput] | ImageInput, *,
               idempotency_key: str | None = None, **params: Any) -> Job:
        """Upload the images with parameters (the API's form fields: steps=..., style_weight=...)."""
        style_list = [styles] if isinstance(styles, (str, Path, bytes)) else list(styles)
        files = [("content", _file(content, "content"))]
        files += [("style", _file(s, f"style-{i}")) for i, s in enumerate(style_list)]
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Job.from_json(self._request("POST", "/jobs", files=files, data=_form(params), headers=headers).json())

    def get(self, job_id: str) -> Job:
        return Job.from_json(self._request("GET", f"/jobs/{job_id}").json())

    def list(self, *, offset: int = 0, limit: int = 20) -> list[Job]:
        body = self._request("GET", "/jobs", params={"offset": offset, "limit": limit}).json()
        return [Job.from_json(item) for item in body["items"]]

    def cancel(self, job_id: str) -> Job:
        return Job.from_json(self._request("POST", f"/jobs/{job_id}/cancel").json())

    def delete(self, job_id: str) -> None:
        self._request("DELETE", f"/jobs/{job_id}")

    def result(self, job_id: str) -> bytes:
        """The finished PNG; `Conflict` while the job is not done."""
        return self._request("GET", f"/jobs/{job_id}/result").content

    def download(self, job_id: str, path: str | Path) -> Path:
        target = Path(path)
        target.write_bytes(self.result(job_id))
        return target

    def events(self, job_id: str, *, last_event_id: str | None = None, retries: int = 5) -> Iterator[Event]:
        """The job's events until `completed`; a dropped connection is resumed from the last event id."""
        failures = 0
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            try:
                with self._http.stream("GET", f"/jobs/{job_id}/events", headers=headers,
                                       timeout=httpx.Timeout(60.0, read=None)) as response:
                    if response.status_code >= 400:
                        response.read()
                        _check(response)
                    parser = _SSEParser()
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        if event is None:
                            continue
                        failures = 0
                        if event.id:
                            last_event_id = event.id
                        yield event
                        if event.type == "completed":
                            return
            except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
                failures += 1
                if failures > retries:
                    raise TransportError(f"the event stream keeps failing: {exc}") from exc
                time.sleep(min(2.0 ** failures / 4, 5.0))

    def wait(self, job_id: str, *, timeout_s: float | None = None,
             on_event: Callable[[Event], None] | None = None) -> Job:
        """Follow the job's events until it ends (or `WaitTimeout`); returns the final job."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for event in self.events(job_id):
            if on_event:
                on_event(event)
            if event.type == "completed":
                return Job.from_json(event.data)
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(f"job {job_id} not finished after {timeout_s} s")
        return self.get(job_id)


class AsyncNstClient:
    """The same operations for asyncio code."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout_s: float = 60.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout_s, transport=transport)

    async def __aenter__(self) -> "AsyncNstClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return _check(await self._http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise TransportError(f"cannot reach the service: {exc}") from exc

    async def submit(self, content: ImageInput, styles: Sequence[ImageInput] | ImageInput, *,
                     idempotency_key: str | None = None, **params: Any) -> Job:
        style_list = [styles] if isinstance(styles, (str, Path, bytes)) else list(styles)
        files = [("content", _file(content, "content"))]
        files += [("style", _file(s, f"style-{i}")) for i, s in enumerate(style_list)]
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = await self._request("POST", "/jobs", files=files, data=_form(params), headers=headers)
        return Job.from_json(response.json())

    async def get(self, job_id: str) -> Job:
        return Job.from_json((await self._request("GET", f"/jobs/{job_id}")).json())

    async def cancel(self, job_id: str) -> Job:
        return Job.from_json((await self._request("POST", f"/jobs/{job_id}/cancel")).json())

    async def result(self, job_id: str) -> bytes:
        return (await self._request("GET", f"/jobs/{job_id}/result")).content

    async def events(self, job_id: str, *, last_event_id: str | None = None,
                     retries: int = 5) -> AsyncIterator[Event]:
        failures = 0
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            try:
                async with self._http.stream("GET", f"/jobs/{job_id}/events", headers=headers,
                                             timeout=httpx.Timeout(60.0, read=None)) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        _check(response)
                    parser = _SSEParser()
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is None:
                            continue
                        failures = 0
                        if event.id:
                            last_event_id = event.id
                        yield event
                        if event.type == "completed":
                            return
            except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
                failures += 1
                if failures > retries:
                    raise TransportError(f"the event stream keeps failing: {exc}") from exc
                await asyncio.sleep(min(2.0 ** failures / 4, 5.0))

    async def wait(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        """Poll cheaply (ETag) until the job ends, or `WaitTimeout`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        etag = None
        while True:
            response = await self._http.get(f"/jobs/{job_id}", headers={"If-None-Match": etag} if etag else {})
            if response.status_code != 304:
                job = Job.from_json(_check(response).json())
                etag = response.headers.get("ETag")
                if job.done:
                    return job
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(f"job {job_id} not finished after {timeout_s} s")
            await asyncio.sleep(0.5)
