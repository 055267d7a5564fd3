"""Bounds what an API process holds at once, in all and per caller: open event streams (and any request that
waits on Redis: each holds a connection, and the pool must keep some for everyone else), and uploads being
received (each may hold NST_MAX_REQUEST_BYTES of body and its copies)."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from service.errors import ApiError

log = logging.getLogger("nst.api")

RETRY_AFTER_S = 5


@dataclass
class Hold:
    """One held request's place; `release` is idempotent (a stream may end by its generator or by its response)."""

    limiter: HoldLimiter
    identity: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.limiter.release(self.identity)


@dataclass
class HoldLimiter:
    """At most `total` held requests in this process and `per_identity` per caller; past either, 503 or 429 with
    Retry-After. Used from the event loop only, so plain counters suffice."""

    total: int
    per_identity: int
    code: str = "too_many_streams"
    what: str = "open event streams or waits"
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def held(self) -> int:
        return sum(self.counts.values())

    def acquire(self, identity: str) -> Hold:
        retry = {"Retry-After": str(RETRY_AFTER_S)}
        if self.held >= self.total:
            log.warning("%s at this process's cap of %d", self.what, self.total)
            raise ApiError(503, self.code, f"this server holds as many {self.what} as it can", headers=retry)
        if self.counts[identity] >= self.per_identity:
            raise ApiError(
                429, self.code, f"at most {self.per_identity} {self.what} per caller; close one first", headers=retry
            )
        self.counts[identity] += 1
        return Hold(self, identity)

    @contextlib.contextmanager
    def holding(self, identity: str) -> Iterator[None]:
        """A place for the duration of the block (for a request that waits before it answers)."""
        hold = self.acquire(identity)
        try:
            yield
        finally:
            hold.release()

    @contextlib.contextmanager
    def holding_if_free(self, identity: str) -> Iterator[bool]:
        """A place for the block when one is free (True), else none (False): for a request that can answer
        without waiting (`Prefer: wait`) rather than be refused."""
        try:
            hold = self.acquire(identity)
        except ApiError:
            yield False
            return
        try:
            yield True
        finally:
            hold.release()

    def release(self, identity: str) -> None:
        self.counts[identity] -= 1
        if self.counts[identity] <= 0:
            del self.counts[identity]


async def held_stream(stream: AsyncIterator[str], hold: Hold) -> AsyncIterator[str]:
    """`stream`, giving back its place when it ends (the response's background task gives it back as well,
    for a client that left before the first chunk)."""
    try:
        async for chunk in stream:
            yield chunk
    finally:
        hold.release()
