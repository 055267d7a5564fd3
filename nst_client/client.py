"""Sync and async clients of the job service: submit, get, list, follow events, wait, download, cancel,
finish, delete; sweeps likewise. One httpx client per instance; its transport is injectable (tests, proxies,
mounted apps)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Union

import httpx

from nst_client.errors import JobNotFound, TransportError, WaitTimeout, error_for
from nst_client.events import Event, aiter_events, iter_events
from nst_client.jobs import Job, JobPage
from nst_client.sweeps import Sweep, axes_fields

if TYPE_CHECKING:
    from nst_shared.params import TransferParams

DEFAULT_SERVER = "http://127.0.0.1:8000"

# A path, the file's bytes, or an open binary file.
ImageInput = Union[str, "os.PathLike[str]", bytes, IO[bytes]]
# A form field's value: sequences (style_blend) are sent comma-separated, booleans as true/false.
FormValue = str | int | float | bool | Sequence[float] | None

_RequestFiles = list[tuple[str, tuple[str, Any]]]


def _image(value: ImageInput, name: str) -> tuple[str, Any]:
    if isinstance(value, bytes):
        return name, value
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        return path.name, path.read_bytes()
    return Path(getattr(value, "name", name)).name, value


def _form_value(value: FormValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _images(value: ImageInput | Sequence[ImageInput] | None) -> list[ImageInput]:
    """One image or several as a list."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, os.PathLike)) or hasattr(value, "read"):
        return [value]  # type: ignore[list-item]
    return list(value)


def _submission(
    content: ImageInput,
    styles: ImageInput | Sequence[ImageInput],
    style_masks: ImageInput | Sequence[ImageInput] | None,
    params: TransferParams | None,
    fields: dict[str, FormValue],
    idempotency_key: str | None,
    webhook_url: str | None,
    webhook_events: Sequence[str] | None,
    wait_s: float | None = None,
) -> tuple[_RequestFiles, dict[str, str], dict[str, str]]:
    """The multipart files, form fields and headers of `POST /jobs`."""
    style_list = _images(styles)
    if not style_list:
        raise ValueError("at least one style image is needed")
    files = [("content", _image(content, "content"))]
    files += [("style", _image(s, f"style-{i}")) for i, s in enumerate(style_list)]
    files += [("style_mask", _image(m, f"style-mask-{i}")) for i, m in enumerate(_images(style_masks))]
    values: dict[str, FormValue] = {}
    if params is not None:
        from nst_shared.params import api_fields  # pydantic only: no torch

        given = params.model_fields_set & set(api_fields())  # the others: the service's defaults
        values.update({k: v for k, v in params.to_dict().items() if k in given})
    values.update(fields)
    if webhook_url:
        values["webhook_url"] = webhook_url
        if webhook_events:
            values["webhook_events"] = ",".join(webhook_events)
    form = {k: _form_value(v) for k, v in values.items() if v is not None}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    if wait_s:
        headers["Prefer"] = f"wait={wait_s:g}"
    return files, form, headers


def _sweep_submission(
    content: ImageInput,
    styles: ImageInput | Sequence[ImageInput],
    sweep: Mapping[str, Sequence[object]],
    style_masks: ImageInput | Sequence[ImageInput] | None,
    params: TransferParams | None,
    fields: dict[str, FormValue],
    idempotency_key: str | None,
    wait_s: float | None,
) -> dict[str, Any]:
    """The request of `POST /sweeps`: the job form's, plus the `sweep` fields."""
    files, form, headers = _submission(
        content, styles, style_masks, params, fields, idempotency_key, None, None, wait_s
    )
    data = {**form, "sweep": axes_fields(sweep)}
    return {"files": files, "data": data, "headers": headers, **_waited(wait_s)}


def _sweep_wait_over(sweep: Sweep, deadline: float | None, timeout_s: float | None) -> bool:
    """Whether `wait_sweep` is done with this reading: True once every cell has ended; `WaitTimeout` past the
    deadline."""
    if sweep.done:
        return True
    if deadline is not None and time.monotonic() >= deadline:
        raise WaitTimeout(f"sweep {sweep.id} has not ended after {timeout_s:g} s", job_id=sweep.id)
    return False


def _waited(wait_s: float | None) -> dict[str, Any]:
    """A request waiting up to `wait_s` on the service gets that much more time to answer."""
    return {"timeout": httpx.Timeout(30.0, read=wait_s + 30.0)} if wait_s else {}


def _accept(format: str | None) -> dict[str, str]:
    return {"Accept": f"image/{format}"} if format else {}


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise error_for(response.status_code, body, retry_after=response.headers.get("Retry-After"))
    return response


def _final(job_id: str, event: Event) -> Job:
    job = event.job
    if job is None:
        raise JobNotFound(404, "job_not_found", f"job {job_id} was deleted while waiting for it")
    return job


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": "nst-client/1"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


class NstClient:
    """Synchronous client.

    `api_key` is sent as `Authorization: Bearer ...` (services with NST_API_KEYS need it);
    `transport` is httpx's, injectable; `retries` is how many reconnects in a row an event stream may make."""

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.retries = retries
        self._http = httpx.Client(
            base_url=self.server, headers=_headers(api_key), timeout=timeout_s, transport=transport
        )

    @classmethod
    def from_env(cls, **options: Any) -> NstClient:
        """A client for `NST_SERVER` with `NST_API_KEY` (the variables `nst submit` reads too)."""
        return cls(os.environ.get("NST_SERVER", DEFAULT_SERVER), api_key=os.environ.get("NST_API_KEY"), **options)

    def __enter__(self) -> NstClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return _checked(self._http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise TransportError(f"cannot reach the service at {self.server}: {exc}") from exc

    def submit(
        self,
        content: ImageInput,
        styles: ImageInput | Sequence[ImageInput],
        *,
        style_masks: ImageInput | Sequence[ImageInput] | None = None,
        params: TransferParams | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
        webhook_events: Sequence[str] | None = None,
        wait_s: float | None = None,
        **fields: FormValue,
    ) -> Job:
        """Upload the images and queue a job; with `wait_s` (at most 60), the service answers once the job has
        ended or that many seconds have passed (`Prefer: wait`), so a small job needs one call. `style_masks`,
        when given, are one mask per style in the same order (white: that style paints there). Parameters are
        the API's form fields (`look="painterly"`, `steps=60`, `style_weight=300`, `style_blend=(0.7, 0.3)`,
        `color_mode="match"`), or a whole `TransferParams` as `params`; those not given take the look's values,
        then the service's defaults; the job options too (`format="webp"`, `quality=80`, `cancel_after=600`,
        `ttl_s=3600`). `content` may be a clip (MP4, MOV, WebM, animated GIF or WebP): the job's `kind` is then
        "video" and its result an MP4 (or WebM: `video_format="webm"`), docs/video.md. Raises `InvalidRequest`
        (with `field`) for a refused one."""
        files, form, headers = _submission(
            content, styles, style_masks, params, fields, idempotency_key, webhook_url, webhook_events, wait_s
        )
        response = self._request("POST", "/jobs", files=files, data=form, headers=headers, **_waited(wait_s))
        return Job.from_json(response.json())

    def get(self, job_id: str) -> Job:
        return Job.from_json(self._request("GET", f"/jobs/{job_id}").json())

    def submit_sweep(
        self,
        content: ImageInput,
        styles: ImageInput | Sequence[ImageInput],
        sweep: Mapping[str, Sequence[object]],
        *,
        style_masks: ImageInput | Sequence[ImageInput] | None = None,
        params: TransferParams | None = None,
        idempotency_key: str | None = None,
        wait_s: float | None = None,
        **fields: FormValue,
    ) -> Sweep:
        """Queue one job per cell of the grid `sweep` names, one or two parameters and their values
        (`{"style_weight": [5, 15, 45], "look": ["subtle", "painterly"]}`); with `wait_s` (at most 60) the
        service answers once every cell has ended or that many seconds have passed; the other arguments as
        `submit`'s."""
        request = _sweep_submission(content, styles, sweep, style_masks, params, fields, idempotency_key, wait_s)
        return Sweep.from_json(self._request("POST", "/sweeps", **request).json())

    def get_sweep(self, sweep_id: str) -> Sweep:
        return Sweep.from_json(self._request("GET", f"/sweeps/{sweep_id}").json())

    def wait_sweep(
        self,
        sweep_id: str,
        *,
        timeout_s: float | None = None,
        poll_s: float = 0.5,
        on_update: Callable[[Sweep], None] | None = None,
    ) -> Sweep:
        """Poll the sweep until every cell has ended; `on_update` sees each reading. `WaitTimeout` after
        `timeout_s` (the cells go on)."""
        deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        while True:
            sweep = self.get_sweep(sweep_id)
            if on_update is not None:
                on_update(sweep)
            if _sweep_wait_over(sweep, deadline, timeout_s):
                return sweep
            time.sleep(poll_s)

    def sweep_sheet(self, sweep_id: str, *, format: str | None = None) -> bytes:
        """The contact sheet (PNG, or `format`); `Conflict` while a cell is queued or running."""
        return self._request("GET", f"/sweeps/{sweep_id}/sheet", headers=_accept(format)).content

    def cancel_sweep(self, sweep_id: str) -> Sweep:
        return Sweep.from_json(self._request("POST", f"/sweeps/{sweep_id}/cancel").json())

    def delete_sweep(self, sweep_id: str) -> None:
        """Remove the sweep, every cell's job and their files."""
        self._request("DELETE", f"/sweeps/{sweep_id}")

    def list_jobs(self, *, offset: int = 0, limit: int = 20) -> JobPage:
        body = self._request("GET", "/jobs", params={"offset": offset, "limit": limit}).json()
        return JobPage([Job.from_json(item) for item in body["items"]], body["total"], body["offset"], body["limit"])

    def cancel(self, job_id: str) -> Job:
        """Queued: canceled at once; running: stops within one iteration. `Conflict` once finished."""
        return Job.from_json(self._request("POST", f"/jobs/{job_id}/cancel").json())

    def finish(self, job_id: str) -> Job:
        """Running: stops after its current step and succeeds with the latest picture (`Job.steps_done` says
        how far it got). `Conflict` while queued (nothing to keep yet: cancel it) and once finished."""
        return Job.from_json(self._request("POST", f"/jobs/{job_id}/finish").json())

    def delete(self, job_id: str) -> None:
        """Remove the job and its files (a running job is stopped first)."""
        self._request("DELETE", f"/jobs/{job_id}")

    def result(self, job_id: str, *, format: str | None = None) -> bytes:
        """The finished picture in the job's format, or `format` (png, webp, jpeg, avif); a clip's video (its
        poster with format="png"). `Conflict` while the job is not done or when it did not succeed."""
        return self._request("GET", f"/jobs/{job_id}/result", headers=_accept(format)).content

    def preview(self, job_id: str) -> bytes:
        """The latest preview, WebP (jobs submitted with `preview_every`); `JobNotFound` before the first."""
        return self._request("GET", f"/jobs/{job_id}/preview").content

    def download(self, job_id: str, path: str | os.PathLike[str], *, format: str | None = None) -> Path:
        """Write the finished picture (in the job's format, or `format`) to `path` (nothing is written when
        there is no result)."""
        target = Path(path)
        target.write_bytes(self.result(job_id, format=format))
        return target

    def events(
        self, job_id: str, *, last_event_id: str | None = None, timeout_s: float | None = None
    ) -> Iterator[Event]:
        """The job's events until `completed`; dropped connections are resumed with Last-Event-ID.
        Pass an event's `id` as `last_event_id` to carry on where an earlier iteration stopped."""
        return iter_events(self._http, job_id, last_event_id=last_event_id, timeout_s=timeout_s, retries=self.retries)

    def wait(
        self, job_id: str, *, timeout_s: float | None = None, on_event: Callable[[Event], None] | None = None
    ) -> Job:
        """Follow the job until it ends and return it (whatever its status); `on_event` sees every event.
        Raises `WaitTimeout` after `timeout_s` (the job goes on)."""
        for event in self.events(job_id, timeout_s=timeout_s):
            if on_event is not None:
                on_event(event)
            if event.type == "completed":
                return _final(job_id, event)
        raise TransportError(f"the event stream of job {job_id} ended without its final event")


class AsyncNstClient:
    """The same operations for asyncio code (`async with AsyncNstClient(...) as nst: ...`)."""

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        retries: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.retries = retries
        self._http = httpx.AsyncClient(
            base_url=self.server, headers=_headers(api_key), timeout=timeout_s, transport=transport
        )

    @classmethod
    def from_env(cls, **options: Any) -> AsyncNstClient:
        return cls(os.environ.get("NST_SERVER", DEFAULT_SERVER), api_key=os.environ.get("NST_API_KEY"), **options)

    async def __aenter__(self) -> AsyncNstClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return _checked(await self._http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise TransportError(f"cannot reach the service at {self.server}: {exc}") from exc

    async def submit(
        self,
        content: ImageInput,
        styles: ImageInput | Sequence[ImageInput],
        *,
        style_masks: ImageInput | Sequence[ImageInput] | None = None,
        params: TransferParams | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
        webhook_events: Sequence[str] | None = None,
        wait_s: float | None = None,
        **fields: FormValue,
    ) -> Job:
        files, form, headers = _submission(
            content, styles, style_masks, params, fields, idempotency_key, webhook_url, webhook_events, wait_s
        )
        response = await self._request("POST", "/jobs", files=files, data=form, headers=headers, **_waited(wait_s))
        return Job.from_json(response.json())

    async def get(self, job_id: str) -> Job:
        return Job.from_json((await self._request("GET", f"/jobs/{job_id}")).json())

    async def submit_sweep(
        self,
        content: ImageInput,
        styles: ImageInput | Sequence[ImageInput],
        sweep: Mapping[str, Sequence[object]],
        *,
        style_masks: ImageInput | Sequence[ImageInput] | None = None,
        params: TransferParams | None = None,
        idempotency_key: str | None = None,
        wait_s: float | None = None,
        **fields: FormValue,
    ) -> Sweep:
        request = _sweep_submission(content, styles, sweep, style_masks, params, fields, idempotency_key, wait_s)
        return Sweep.from_json((await self._request("POST", "/sweeps", **request)).json())

    async def get_sweep(self, sweep_id: str) -> Sweep:
        return Sweep.from_json((await self._request("GET", f"/sweeps/{sweep_id}")).json())

    async def wait_sweep(
        self,
        sweep_id: str,
        *,
        timeout_s: float | None = None,
        poll_s: float = 0.5,
        on_update: Callable[[Sweep], None] | None = None,
    ) -> Sweep:
        deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        while True:
            sweep = await self.get_sweep(sweep_id)
            if on_update is not None:
                on_update(sweep)
            if _sweep_wait_over(sweep, deadline, timeout_s):
                return sweep
            await asyncio.sleep(poll_s)

    async def sweep_sheet(self, sweep_id: str, *, format: str | None = None) -> bytes:
        return (await self._request("GET", f"/sweeps/{sweep_id}/sheet", headers=_accept(format))).content

    async def cancel_sweep(self, sweep_id: str) -> Sweep:
        return Sweep.from_json((await self._request("POST", f"/sweeps/{sweep_id}/cancel")).json())

    async def delete_sweep(self, sweep_id: str) -> None:
        await self._request("DELETE", f"/sweeps/{sweep_id}")

    async def list_jobs(self, *, offset: int = 0, limit: int = 20) -> JobPage:
        body = (await self._request("GET", "/jobs", params={"offset": offset, "limit": limit})).json()
        return JobPage([Job.from_json(item) for item in body["items"]], body["total"], body["offset"], body["limit"])

    async def cancel(self, job_id: str) -> Job:
        return Job.from_json((await self._request("POST", f"/jobs/{job_id}/cancel")).json())

    async def finish(self, job_id: str) -> Job:
        return Job.from_json((await self._request("POST", f"/jobs/{job_id}/finish")).json())

    async def delete(self, job_id: str) -> None:
        await self._request("DELETE", f"/jobs/{job_id}")

    async def result(self, job_id: str, *, format: str | None = None) -> bytes:
        return (await self._request("GET", f"/jobs/{job_id}/result", headers=_accept(format))).content

    async def preview(self, job_id: str) -> bytes:
        return (await self._request("GET", f"/jobs/{job_id}/preview")).content

    async def download(self, job_id: str, path: str | os.PathLike[str], *, format: str | None = None) -> Path:
        target = Path(path)
        target.write_bytes(await self.result(job_id, format=format))
        return target

    def events(
        self, job_id: str, *, last_event_id: str | None = None, timeout_s: float | None = None
    ) -> AsyncIterator[Event]:
        return aiter_events(self._http, job_id, last_event_id=last_event_id, timeout_s=timeout_s, retries=self.retries)

    async def wait(
        self, job_id: str, *, timeout_s: float | None = None, on_event: Callable[[Event], None] | None = None
    ) -> Job:
        async for event in self.events(job_id, timeout_s=timeout_s):
            if on_event is not None:
                on_event(event)
            if event.type == "completed":
                return _final(job_id, event)
        raise TransportError(f"the event stream of job {job_id} ended without its final event")
