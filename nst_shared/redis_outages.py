"""When Redis is out rather than wrong: unreachable, or refusing writes for a while (MISCONF: its disk is full
and it cannot persist; OOM: at maxmemory; READONLY: a replica during a failover). Waiting can help either way."""

from __future__ import annotations

import redis

REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_REFUSING = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)


# The error codes of a refused write, as a command gets them and as a Lua script passes them on (Redis 6:
# "Error running script ... -OOM command not allowed ...").
_REFUSAL_CODES = ("MISCONF", "OOM", "READONLY")


def refuses_writes(exc: BaseException) -> bool:
    """True for Redis answering that it takes no writes now (MISCONF arrives as a plain ResponseError)."""
    if isinstance(exc, _REFUSING):
        return True
    if not isinstance(exc, redis.exceptions.ResponseError):
        return False
    text = str(exc)
    return text.startswith(_REFUSAL_CODES) or any(f"-{code} " in text for code in _REFUSAL_CODES)


def is_redis_outage(exc: BaseException) -> bool:
    """True when Redis is unreachable or refuses writes: an outage to wait out, not a bug."""
    return isinstance(exc, REDIS_DOWN) or refuses_writes(exc)
