"""`Prefer: wait=N` (RFC 7240, as Replicate reads it): a submission's answer held until its job (or every cell of
its sweep) ends or N seconds pass, so a script makes one call for a small job."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from nst_shared.jobs import JobRecord, JobStore, parse_events
from nst_shared.keys import Keys

MAX_WAIT_S = 60


def requested_wait_s(prefer: str | None) -> float | None:
    """The `wait` preference in seconds (at most MAX_WAIT_S), or None; a malformed one is ignored, as RFC 7240
    asks of preferences a server cannot honour."""
    for token in (prefer or "").split(","):
        name, _, value = token.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                seconds = float(value.strip().strip('"'))
            except ValueError:
                return None
            return min(seconds, MAX_WAIT_S) if seconds > 0 else None
    return None


async def wait_for_end(
    redis: aioredis.Redis, store: JobStore, job_id: str, *, timeout_s: float, poll_s: float = 5.0
) -> JobRecord | None:
    """The job once it has ended, or as it is after `timeout_s` (None when it is gone). Blocks on the job's
    event stream, so it answers within a Redis round trip of the end."""
    deadline = time.monotonic() + timeout_s
    # From the stream's latest event: anything after it is new, and the record is read after it, so an end
    # between the two reads is seen either in the record or in the stream.
    latest = await redis.xrevrange(Keys.events(job_id), count=1)
    last = (latest[0][0] if latest else None) or "0"  # (redis-py types an entry's id as optional: XCLAIM's can be)
    record = await asyncio.to_thread(store.get, job_id)
    while record is not None and not record.status.terminal:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        reply = await redis.xread({Keys.events(job_id): last}, count=200, block=int(min(remaining, poll_s) * 1000))
        events = parse_events(reply)
        if events:
            last = events[-1][0]
        if not events or any(kind in ("status", "completed") for _, kind, _ in events):
            record = await asyncio.to_thread(store.get, job_id)
    return record


async def wait_for_all(
    redis: aioredis.Redis, store: JobStore, job_ids: list[str], *, timeout_s: float
) -> list[JobRecord | None]:
    """Every job once all have ended, or as they are after `timeout_s` in all (a sweep's cells)."""
    deadline = time.monotonic() + timeout_s
    return [
        await wait_for_end(redis, store, job_id, timeout_s=max(0.0, deadline - time.monotonic())) for job_id in job_ids
    ]
