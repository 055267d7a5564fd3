"""Bounds the requests an API process holds open while it waits (event streams, and anything else that waits on
Redis), in all and per caller: each holds a Redis connection, and the pool must keep some for everyone else."""

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
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def held(self) -> int:
        return sum(self.counts.values())

    def acquire(self, identity: str) -> Hold:
        retry = {"Retry-After": str(RETRY_AFTER_S)}
        if self.counts[identity] >= self.per_identity:
            raise ApiError(
                429,
                "too_many_streams",
                f"at most {self.per_identity} open event streams or waits per caller; close one first",
                headers=retry,
            )
        if self.held >= self.total:
            log.warning("open streams at this process's cap of %d", self.total)
            raise ApiError(503, "too_many_streams", "this server holds as many open streams as it can", headers=retry)
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
