"""A lease in Redis: at most one holder at a time (the deployment's sweeper), taken with SET NX PX, renewed and
given up only by its holder (compare in Lua), and taken over by another once its holder stops renewing."""

from __future__ import annotations

import uuid

import redis

# KEYS: the lease. ARGV: holder, ttl_ms. Takes a free lease or renews one's own; 1 when held afterwards.
_HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: the lease. ARGV: holder. Gives it up only if it is still the holder's (never a successor's).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """One process's claim on `key`, valid `ttl_s` from each `hold()` that succeeds."""

    def __init__(self, connection: redis.Redis, key: str, *, ttl_s: float) -> None:
        self.key, self.ttl_s = key, ttl_s
        self.holder = uuid.uuid4().hex
        self._hold = connection.register_script(_HOLD)
        self._release = connection.register_script(_RELEASE)

    def hold(self) -> bool:
        """Take the lease, or renew it if this holder has it; False while another holds it."""
        return bool(self._hold(keys=[self.key], args=[self.holder, max(1, int(self.ttl_s * 1000))]))

    def release(self) -> None:
        """Give the lease up (a stopping process), so another takes it at once rather than after `ttl_s`."""
        self._release(keys=[self.key], args=[self.holder])
