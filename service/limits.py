"""Limits checked before any work is done: request bodies while they stream in, and each job's compute budget."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nst_shared.capacity import WorkerMemory, best_fit
from nst_shared.images import fit_size
from nst_shared.memory import format_bytes
from nst_shared.params import TransferParams
from nst_shared.schedule import params_cost
from nst_shared.settings import Settings
from service.errors import ApiError, error_body


def check_budget(params: TransferParams, content_size: tuple[int, int], settings: Settings) -> None:
    """422 when the job's schedule costs more than NST_MAX_STEP_MEGAPIXELS: the sum over its scales of steps x
    megapixels (more for a scale evaluated in blocks: nst_shared/schedule.py)."""
    cost = params_cost(params, content_size)
    if cost > settings.max_step_megapixels:
        width, height = fit_size(*content_size, params.max_size)
        raise ApiError(422, "over_budget", f"steps x megapixels over the schedule's scales: {params.steps} steps up "
                       f"to {width}x{height} cost {cost:.1f}, over this service's budget of "
                       f"{settings.max_step_megapixels:g}; lower steps or max_size", field="steps")


def check_memory(size: tuple[int, int], offers: list[WorkerMemory]) -> None:
    """422 when a `size` output fits no worker's memory (nothing to check before a worker has announced itself)."""
    fit = best_fit(*size, offers)
    if fit is not None and not fit[1].fits:
        offer, plan = fit
        raise ApiError(422, "too_large_for_workers", f"a {size[0]}x{size[1]} picture needs about "
                       f"{format_bytes(plan.peak_bytes)}; the largest worker offers "
                       f"{format_bytes(offer.budget_bytes)} ({offer.device}, {offer.precision}); lower max_size",
                       field="max_size")


class BodySizeLimit:
    """ASGI middleware: 413 when Content-Length or the bytes actually received pass `max_bytes`."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(error_body("request_too_large", f"the request body is over {self.max_bytes} bytes"))
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body.encode()})


class _TooLarge(Exception):
    pass
