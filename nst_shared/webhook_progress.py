"""`progress` webhook deliveries: a running job's progress, written to the webhook outbox at most once every
NST_WEBHOOK_PROGRESS_INTERVAL_S per job (a Redis key with that expiry is the gate, so a job requeued to another
worker keeps the pace). Best effort by design: a step's progress is superseded by the next one."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from nst_shared import webhook_outbox
from nst_shared.jobs import JobStore
from nst_shared.keys import Keys

# KEYS: job hash, gate key, outbox. ARGV: gate expiry (ms), now, the progress JSON, the delivery id's suffix.
# Only while the job runs, and only when the gate is open (SET NX): one delivery per interval per job.
# Returns 1 when written, 2 when the gate was closed, 0 when the job is not running or wants none.
_OFFER = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
local extra = redis.call('HGET', KEYS[1], 'extra')
if not extra or not string.find(extra, '"progress"', 1, true) then return 0 end
local hook = cjson.decode(extra).webhook
if not hook then return 0 end
local wanted = false
for _, kind in ipairs(hook.events) do if kind == 'progress' then wanted = true end end
if not wanted then return 0 end
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 2 end
local id = string.match(KEYS[1], '[^:]+$')
local names = RECORD_FIELDS
local values = redis.call('HMGET', KEYS[1], unpack(names))
local record = {}
for i, name in ipairs(names) do record[name] = values[i] or '' end
redis.call('LPUSH', KEYS[3], cjson.encode({
  id = 'msg_' .. id .. '_progress_' .. ARGV[4], url = hook.url, event = 'progress', attempt = 0, at = ARGV[2],
  record = record, progress = cjson.decode(ARGV[3])}))
return 1
""".replace("RECORD_FIELDS", webhook_outbox.RECORD_FIELDS_LUA)


class ProgressDeliveries:
    """Offers a running job's progress to its webhook, when it asked for `progress` events."""

    def __init__(self, store: JobStore, job_id: str, *, wanted: bool, interval_s: float) -> None:
        self._store, self._job_id, self._wanted, self._interval_s = store, job_id, wanted, interval_s
        self._script = store.redis.register_script(_OFFER)
        self._next_at = 0.0  # this worker's own pace: no Redis call between deliveries

    @classmethod
    def for_job(cls, store: JobStore, job_id: str, extra: dict[str, Any], *, interval_s: float) -> ProgressDeliveries:
        hook = extra.get("webhook") or {}
        return cls(store, job_id, wanted="progress" in hook.get("events", ()), interval_s=interval_s)

    def offer(self, progress: dict[str, Any]) -> bool:
        """True when a delivery of `progress` was written to the outbox."""
        now = time.monotonic()
        if not self._wanted or now < self._next_at:
            return False
        job_id = self._job_id
        try:
            answer: int = self._script(
                keys=[Keys.job(job_id), Keys.webhook_progress_gate(job_id), Keys.webhooks_pending],
                args=[int(self._interval_s * 1000), repr(time.time()), json.dumps(progress), progress.get("step", 0)],
            )
        except redis.exceptions.RedisError:  # best effort: a progress report is superseded by the next one
            return False
        if answer:  # written, or another worker's delivery holds the gate: no Redis call until the next interval
            self._next_at = now + self._interval_s
        return answer == 1
