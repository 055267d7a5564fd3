"""Server-Sent Events for one job, replayed from its Redis stream so Last-Event-ID resumes without loss."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from fastapi import Request
from redis import exceptions as redis_errors

from nst_shared.jobs import JobStore, parse_events
from nst_shared.keys import Keys
from service.schemas import JobPublic, public_job

log = logging.getLogger("nst.api")


def sse(event: str, data: Any, event_id: str | None = None) -> str:
    lines = [f"id: {event_id}"] if event_id else []
    lines += [f"event: {event}", f"data: {json.dumps(data, separators=(',', ':'))}"]
    return "\n".join(lines) + "\n\n"


async def job_event_stream(
    request: Request,
    redis: aioredis.Redis,
    store: JobStore,
    job_id: str,
    *,
    snapshot: JobPublic,
    last_event_id: str,
    keepalive_s: float,
    token: str | None = None,
) -> AsyncIterator[str]:
    """`snapshot` (no id, so it never moves the client's Last-Event-ID), then the stream's events from
    `last_event_id` on; `completed` carries the whole job and ends the stream. `token` signs the links."""
    yield "retry: 2000\n\n"
    yield sse("snapshot", snapshot.model_dump(mode="json"))
    last = last_event_id if _valid_id(last_event_id) else "0"
    try:
        async for chunk in _follow(request, redis, store, job_id, last, keepalive_s, token):
            yield chunk
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
        # Redis restarting or out of connections: end the stream cleanly (a 503 cannot follow a 200); the
        # client reconnects with Last-Event-ID after the retry delay and loses nothing.
        log.warning("event stream of job %s ended: %s", job_id, exc)


async def _follow(
    request: Request,
    redis: aioredis.Redis,
    store: JobStore,
    job_id: str,
    last: str,
    keepalive_s: float,
    token: str | None,
) -> AsyncIterator[str]:
    while True:
        reply = await redis.xread({Keys.events(job_id): last}, count=200, block=int(keepalive_s * 1000))
        events = parse_events(reply)
        if not events:
            if await request.is_disconnected():
                return
            record = await asyncio.to_thread(store.get, job_id)
            if record is None:  # deleted or expired while we waited
                yield sse("completed", {"id": job_id, "status": "deleted"})
                return
            if record.status.terminal:  # the client resumed after the final event: repeat it
                yield sse("completed", public_job(record, token=token).model_dump(mode="json"))
                return
            yield ": keep-alive\n\n"
            continue
        for event_id, kind, data in events:
            last = event_id
            if kind == "completed":
                record = await asyncio.to_thread(store.get, job_id)
                whole = public_job(record, token=token).model_dump(mode="json") if record else {"id": job_id, **data}
                yield sse("completed", whole, event_id)
                return
            if kind == "preview":
                signed = f"&token={token}" if token else ""
                data = {**data, "url": f"/jobs/{job_id}/preview?step={data.get('step')}{signed}"}
            yield sse(kind, data, event_id)


def _valid_id(value: str) -> bool:
    left, _, right = value.partition("-")
    return value.isascii() and left.isdigit() and (right == "" or right.isdigit())
