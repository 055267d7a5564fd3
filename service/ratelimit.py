"""Rate limits per API key (or per client IP without keys), counted in Redis so they hold across API processes
(applied by `service.guard.AccessGuard`)."""

from __future__ import annotations

import math

import redis.asyncio as aioredis

from nst_shared.keys import Keys
from service.errors import ApiError

# A fixed window per (kind, identity) that opens with the first request: KEYS[1] the counter,
# ARGV[1] the window in ms, ARGV[2] how many requests this one counts as. Returns {count so far, ms until the
# window closes}.
_HIT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""

WINDOW_S = 60
_WHAT = {"requests": "requests", "submissions": "job submissions", "auth_failures": "requests with a wrong API key"}


class RateLimiter:
    """Counts requests of one kind per identity in a `WINDOW_S` window; over `per_window`, 429."""

    def __init__(self, connection: aioredis.Redis) -> None:
        self._redis = connection
        self._hit = connection.register_script(_HIT)

    async def hit(self, kind: str, identity: str, *, per_window: int, count: int = 1) -> None:
        """Count one request (as `count`: a sweep's cells); raise 429 with Retry-After when it is over the
        limit (0 = no limit)."""
        if per_window <= 0 or count <= 0:
            return
        total, ttl_ms = await self._hit(keys=[Keys.rate(kind, identity)], args=[WINDOW_S * 1000, count])
        if int(total) > per_window:
            raise _refusal(kind, per_window, int(ttl_ms))

    async def check(self, kind: str, identity: str, *, per_window: int) -> None:
        """429 when `identity` already used up its `per_window` of this kind (nothing counted)."""
        if per_window <= 0:
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(Keys.rate(kind, identity))
        pipe.pttl(Keys.rate(kind, identity))
        count, ttl_ms = await pipe.execute()
        if count is not None and int(count) >= per_window:
            raise _refusal(kind, per_window, int(ttl_ms))


def _refusal(kind: str, per_window: int, ttl_ms: int) -> ApiError:
    retry_s = max(1, math.ceil(ttl_ms / 1000))
    return ApiError(
        429,
        "auth_rate_limited" if kind == "auth_failures" else "rate_limited",
        f"too many {_WHAT[kind]}: at most {per_window} per minute; try again in {retry_s} s",
        headers={"Retry-After": str(retry_s)},
    )
