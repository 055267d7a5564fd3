"""Workers that share one GPU share its memory: the first to start measures what is free on it (the pool), and
each takes its share in one Lua script, so two workers starting together never both count the same memory.

Torch-free: the worker measures the device (the engine's `device_memory`) and hands the numbers in."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from nst_shared.keys import Keys

POOL_FRACTION = 0.9  # of the memory free when the first worker starts: the rest is the driver's and CUDA's slack


@dataclass(frozen=True)
class DeviceMemory:
    """A GPU as a worker sees it when it starts."""

    device_id: str  # unique across hosts (the GPU's UUID): workers on one GPU meet under it
    free_bytes: int
    total_bytes: int


# KEYS: the device's hash. ARGV: worker name, pool when none is live (bytes), share (workers per GPU), ttl_ms.
# Drops expired reservations; with none left the pool is measured anew. Returns the budget taken (0: none left).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entries = redis.call('HGETALL', KEYS[1])
local reserved, live = 0, 0
for i = 1, #entries, 2 do
  local name, value = entries[i], entries[i + 1]
  if string.sub(name, 1, 2) == 'w:' then
    local bytes, expires = string.match(value, '(%d+) (%d+)')
    if tonumber(expires) <= now or name == 'w:' .. ARGV[1] then
      redis.call('HDEL', KEYS[1], name)
    else
      reserved = reserved + tonumber(bytes)
      live = live + 1
    end
  end
end
local pool = tonumber(redis.call('HGET', KEYS[1], 'pool') or '0')
if live == 0 then
  pool = tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], 'pool', string.format('%.0f', pool))
end
local budget = math.min(math.floor(pool / tonumber(ARGV[3])), pool - reserved)
if budget <= 0 then return 0 end
redis.call('HSET', KEYS[1], 'w:' .. ARGV[1], string.format('%.0f %.0f', budget, now + tonumber(ARGV[4])))
return string.format('%.0f', budget)
"""

# KEYS: the device's hash. ARGV: worker name, budget, ttl_ms. The worker is alive: its reservation stays.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'w:' .. ARGV[1], ARGV[2] .. ' ' .. string.format('%.0f', now + tonumber(ARGV[3])))
return 1
"""


class DeviceBudget:
    """One worker's share of a GPU's memory, held while the worker lives (renewed with its presence)."""

    def __init__(self, connection: redis.Redis, device: DeviceMemory, *, worker: str, ttl_s: float) -> None:
        self.key, self.worker, self.ttl_ms = Keys.device(device.device_id), worker, max(1, int(ttl_s * 1000))
        self.device = device
        self.budget_bytes = 0
        self._reserve = connection.register_script(_RESERVE)
        self._renew = connection.register_script(_RENEW)
        self._redis = connection

    def reserve(self, *, share: int) -> int:
        """Take this worker's budget: 1/`share` of the pool, at most what the live workers left (0: nothing)."""
        pool = int(POOL_FRACTION * self.device.free_bytes)
        self.budget_bytes = int(self._reserve(keys=[self.key], args=[self.worker, pool, max(1, share), self.ttl_ms]))
        return self.budget_bytes

    def renew(self) -> None:
        self._renew(keys=[self.key], args=[self.worker, self.budget_bytes, self.ttl_ms])

    def release(self) -> None:
        """The worker stops: its share goes back to the pool at once."""
        self._redis.hdel(self.key, f"w:{self.worker}")
