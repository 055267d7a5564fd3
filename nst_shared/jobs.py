"""Job records in Redis, shared by the API and the workers: statuses, key layout, state changes, events.

The record (a hash) is the source of truth for clients; RQ only carries the job id to a worker. Every
state change is a compare-and-set in a Lua script that also appends to the job's event stream, so status
and progress never overwrite each other and an SSE client replaying the stream sees every change once.
"""

from __future__ import annotations

import enum
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from nst_shared import webhooks

PREFIX = "nst"
EVENTS_MAXLEN = 5000


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})


class Keys:
    """The Redis key layout, in one place."""

    jobs_index = f"{PREFIX}:jobs"  # sorted set: job id -> created_at
    running = f"{PREFIX}:running"  # set of job ids a worker is running
    # Metrics (nst_shared/metrics.py): hashes every API process reads at scrape time.
    job_counts = f"{PREFIX}:metrics:jobs"  # submitted, succeeded, failed, canceled -> count
    job_duration = f"{PREFIX}:metrics:job_duration"  # histogram "<status>|<le>", "<status>|sum", ...
    queue_wait = f"{PREFIX}:metrics:queue_wait"  # histogram "<le>", "sum", "count"
    iterations = f"{PREFIX}:metrics:iterations"  # "<device>|seconds", "<device>|count", "<device>|last"

    @staticmethod
    def job(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}"

    @staticmethod
    def events(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}:events"

    @staticmethod
    def cancel(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}:cancel"

    @staticmethod
    def heartbeat(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}:heartbeat"

    @staticmethod
    def idempotency(key: str) -> str:
        return f"{PREFIX}:idempotency:{key}"


# KEYS: job hash, events stream, running set, job counts (a terminal status counts once, here), and optionally
# a heartbeat key that must be absent (so a sweeper never fails or requeues a job a live worker has just
# taken). ARGV: new status, allowed current statuses (comma list), terminal (0/1), ttl_s, maxlen, then
# field/value pairs to set. Returns "OK", or the current status ("alive" when the heartbeat exists).
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return false end
if KEYS[5] and redis.call('EXISTS', KEYS[5]) == 1 then return 'alive' end
if not string.find(',' .. ARGV[2] .. ',', ',' .. current .. ',', 1, true) then return current end
redis.call('HSET', KEYS[1], 'status', ARGV[1], unpack(ARGV, 6))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'type', 'status',
           'data', cjson.encode({status = ARGV[1], previous = current}))
if ARGV[1] == 'running' then redis.call('SADD', KEYS[3], string.match(KEYS[1], '[^:]+$'))
else redis.call('SREM', KEYS[3], string.match(KEYS[1], '[^:]+$')) end
if ARGV[3] == '1' then
  redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'type', 'completed',
             'data', cjson.encode({status = ARGV[1]}))
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 'OK'
"""

# KEYS: job hash, events stream. ARGV: event type, event json, maxlen, then field/value pairs.
# Writes only while the job runs, so a late progress report cannot follow the final event.
_RUNNING_EVENT = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if #ARGV > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', ARGV[1], 'data', ARGV[2])
return 1
"""


@dataclass
class JobRecord:
    """A job as stored: plain data, JSON-able."""

    id: str
    status: JobStatus
    created_at: float
    params: dict[str, Any]
    styles: int
    started_at: float | None = None
    finished_at: float | None = None
    device: str | None = None
    precision: str | None = None  # the number format the worker's network ran in: fp32 or bf16
    worker: str | None = None
    error: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    preview_step: int | None = None
    rq_job_id: str | None = None
    attempts: int = 0
    owner: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> "JobRecord":
        def num(name: str) -> float | None:
            return float(data[name]) if data.get(name) else None

        def js(name: str) -> Any:
            return json.loads(data[name]) if data.get(name) else None

        return cls(id=data["id"], status=JobStatus(data["status"]), created_at=float(data["created_at"]),
                   params=js("params") or {}, styles=int(data.get("styles", 1)),
                   started_at=num("started_at"), finished_at=num("finished_at"),
                   device=data.get("device") or None, precision=data.get("precision") or None,
                   worker=data.get("worker") or None,
                   error=js("error"), progress=js("progress"),
                   preview_step=int(data["preview_step"]) if data.get("preview_step") else None,
                   rq_job_id=data.get("rq_job_id") or None, attempts=int(data.get("attempts", 0)),
                   owner=data.get("owner") or None, extra=js("extra") or {})


# What `new_job_id` makes: 32 lowercase hex digits. Anything else is no job, and never part of a Redis key.
JOB_ID_PATTERN = "^[0-9a-f]{32}$"


def new_job_id() -> str:
    return uuid.uuid4().hex


def is_job_id(text: str) -> bool:
    return re.fullmatch(JOB_ID_PATTERN, text) is not None


class JobStore:
    """Reads and changes job records; every write that changes state goes through one Lua script."""

    def __init__(self, connection: redis.Redis, *, ttl_s: int) -> None:
        self.redis = connection
        self.ttl_s = ttl_s
        self._transition = connection.register_script(_TRANSITION)
        self._running_event = connection.register_script(_RUNNING_EVENT)

    def create(self, job_id: str, *, params: dict[str, Any], styles: int, owner: str | None = None,
               extra: dict[str, Any] | None = None, now: float | None = None) -> JobRecord:
        created = now if now is not None else time.time()
        mapping = {"id": job_id, "status": JobStatus.QUEUED.value, "created_at": repr(created),
                   "params": json.dumps(params), "styles": styles, "attempts": 0,
                   "owner": owner or "", "extra": json.dumps(extra or {})}
        pipe = self.redis.pipeline()
        pipe.hset(Keys.job(job_id), mapping=mapping)
        pipe.xadd(Keys.events(job_id), {"type": "status", "data": json.dumps({"status": "queued"})},
                  maxlen=EVENTS_MAXLEN, approximate=True)
        pipe.zadd(Keys.jobs_index, {job_id: created})
        pipe.hincrby(Keys.job_counts, "submitted", 1)
        pipe.execute()
        return self.get(job_id)  # type: ignore[return-value]

    def get(self, job_id: str) -> JobRecord | None:
        data = self.redis.hgetall(Keys.job(job_id))
        return JobRecord.from_hash(_decode(data)) if data else None

    def set_fields(self, job_id: str, **fields: Any) -> None:
        self.redis.hset(Keys.job(job_id), mapping={k: _encode(v) for k, v in fields.items()})

    def transition(self, job_id: str, to: JobStatus, *, allowed: set[JobStatus] | frozenset[JobStatus],
                   only_if_lost: bool = False, **fields: Any) -> bool:
        """Move the job to `to` if its status is in `allowed` (and, with `only_if_lost`, no worker beats for
        it); set `fields` with it. False when it was not."""
        if to.terminal:
            fields.setdefault("finished_at", time.time())
        pairs: list[Any] = []
        for name, value in fields.items():
            pairs += [name, _encode(value)]
        result = self._transition(
            keys=[Keys.job(job_id), Keys.events(job_id), Keys.running, Keys.job_counts,
                  *([Keys.heartbeat(job_id)] if only_if_lost else [])],
            args=[to.value, ",".join(s.value for s in allowed), int(to.terminal), self.ttl_s, EVENTS_MAXLEN,
                  *pairs])
        if _decode_value(result) != "OK":
            return False
        self._queue_webhooks(job_id, to)
        return True

    def _queue_webhooks(self, job_id: str, status: JobStatus) -> None:
        """Queue the deliveries the job asked for at submission (a thread in the workers sends them)."""
        hook = json.loads(_decode_value(self.redis.hget(Keys.job(job_id), "extra")) or "{}").get("webhook")
        if not hook:
            return
        record = self.get(job_id)
        if record is None:
            return
        kinds = [k for k in hook["events"] if k == "status" or (k == "completed" and status.terminal)]
        for kind in kinds:
            self.redis.lpush(webhooks.PENDING, webhooks.new_delivery(
                hook["url"], kind, webhooks.job_payload(record, status=status.value)))

    def running_event(self, job_id: str, event_type: str, data: dict[str, Any], **fields: Any) -> bool:
        """Append a progress or preview event (and set `fields`) while the job runs."""
        pairs: list[Any] = []
        for name, value in fields.items():
            pairs += [name, _encode(value)]
        return bool(self._running_event(keys=[Keys.job(job_id), Keys.events(job_id)],
                                        args=[event_type, json.dumps(data), EVENTS_MAXLEN, *pairs]))

    def request_cancel(self, job_id: str) -> None:
        self.redis.set(Keys.cancel(job_id), 1, ex=self.ttl_s)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.exists(Keys.cancel(job_id)))

    def beat(self, job_id: str, ttl_s: int) -> None:
        self.redis.set(Keys.heartbeat(job_id), 1, ex=ttl_s)

    def delete(self, job_id: str) -> None:
        # The cancel flag stays (it expires): a worker still running the job must see it and stop.
        self.redis.delete(Keys.job(job_id), Keys.events(job_id), Keys.heartbeat(job_id))
        self.redis.zrem(Keys.jobs_index, job_id)
        self.redis.srem(Keys.running, job_id)

    def recent(self, *, offset: int, limit: int, owner: str | None = None) -> tuple[list[JobRecord], int]:
        """Newest first; records that expired are dropped from the index on the way."""
        ids = [_decode_value(i) for i in self.redis.zrevrange(Keys.jobs_index, 0, -1)]
        records = []
        for job_id in ids:
            record = self.get(job_id)
            if record is None:
                self.redis.zrem(Keys.jobs_index, job_id)
            elif owner is None or record.owner == owner:
                records.append(record)
        return records[offset:offset + limit], len(records)

    def lost(self) -> list[str]:
        """Running jobs whose worker stopped beating (killed, out of memory, machine lost)."""
        found = []
        for raw in self.redis.smembers(Keys.running):
            job_id = _decode_value(raw)
            if self.redis.exists(Keys.heartbeat(job_id)):
                continue
            if self.redis.exists(Keys.job(job_id)):
                found.append(job_id)
            else:
                self.redis.srem(Keys.running, job_id)
        return found

    def fail_lost(self, job_id: str) -> bool:
        """Fail a lost job with `worker_lost`; False when it was no longer running."""
        return self.transition(job_id, JobStatus.FAILED, allowed={JobStatus.RUNNING}, only_if_lost=True, error={
            "code": "worker_lost", "message": "the worker running this job stopped (killed, out of memory or "
                                              "its machine was lost)"})

    def events_after(self, job_id: str, last_id: str, *, block_ms: int | None = None,
                     count: int = 500) -> list[tuple[str, str, dict[str, Any]]]:
        """(event id, type, data) after `last_id` ('0' for all), waiting up to `block_ms` for new ones."""
        reply = self.redis.xread({Keys.events(job_id): last_id}, count=count, block=block_ms)
        return _events(reply)


def parse_events(reply: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """XREAD's reply as (event id, type, data) tuples."""
    return _events(reply)


def _events(reply: Any) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for _stream, entries in reply or []:
        for event_id, fields in entries:
            fields = _decode(fields)
            out.append((_decode_value(event_id), fields["type"], json.loads(fields["data"])))
    return out


def _encode(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _decode_value(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _decode(data: dict) -> dict[str, str]:
    return {_decode_value(k): _decode_value(v) for k, v in data.items()}
