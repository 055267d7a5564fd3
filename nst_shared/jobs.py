"""Job records in Redis, shared by the API and the workers: statuses, key layout, state changes, events.

The record (a hash) is the source of truth for clients; RQ only carries the job id to a worker. Every
state change is a compare-and-set in a Lua script that also appends to the job's event stream, keeps the
indexes and writes the job's webhook deliveries to the outbox, so status and progress never overwrite each
other, an SSE client replaying the stream sees every change once, and no change is without its delivery.
"""

from __future__ import annotations

import enum
import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from redis.typing import EncodableT, FieldT

from nst_shared import webhook_outbox
from nst_shared.job_options import PREVIEW_FORMAT
from nst_shared.job_status import JobStatus
from nst_shared.keys import Keys
from nst_shared.redis_connection import text, texts

EVENTS_MAXLEN = 5000


class StopRequest(str, enum.Enum):
    """What a client asked a running job to do at its next step."""

    CANCEL = "cancel"  # stop and keep no result
    FINISH = "finish"  # stop and keep the latest picture as the result


# KEYS: job hash, events stream, running set, job counts (a terminal status counts once, here), queued index,
# webhook outbox, heartbeat key. ARGV: new status, allowed current statuses (comma list), terminal (0/1), ttl_s
# (unless the job has its own), maxlen, now, the attempt that writes ('' for the API and the sweeper, which
# write for no attempt), only if lost (1: the heartbeat must be absent, so a sweeper never fails or requeues
# a job a live worker has just taken), heartbeat ttl_ms (moving to running: the new attempt's first beat),
# then field/value pairs to set.
# Moving to running starts a new attempt: `attempts` goes up by one and is the attempt's fencing token.
# Returns {"OK", attempt}, or why not: the current status, "alive" (it beats) or "stale" (another attempt's).
# Deliveries are written here, not after, so a crash cannot lose one (at least once).
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return false end
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[7]) == 1 then return 'alive' end
if ARGV[7] ~= '' and redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[7] then return 'stale' end
if not string.find(',' .. ARGV[2] .. ',', ',' .. current .. ',', 1, true) then return current end
local id = string.match(KEYS[1], '[^:]+$')
redis.call('HSET', KEYS[1], 'status', ARGV[1], unpack(ARGV, 10))
local attempt = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if ARGV[1] == 'running' then
  attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  if ARGV[9] ~= '' then redis.call('SET', KEYS[7], attempt, 'PX', ARGV[9]) end
end
local events = {status = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'type', 'status',
                                    'data', cjson.encode({status = ARGV[1], previous = current}))}
if ARGV[1] == 'running' then redis.call('SADD', KEYS[3], id) else redis.call('SREM', KEYS[3], id) end
if ARGV[1] == 'queued' then redis.call('ZADD', KEYS[5], ARGV[6], id) else redis.call('ZREM', KEYS[5], id) end
local extra = redis.call('HGET', KEYS[1], 'extra')
if ARGV[3] == '1' then
  redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
  events.completed = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'type', 'completed',
                                'data', cjson.encode({status = ARGV[1]}))
  local ttl = ARGV[4]  -- the job's own ttl_s (never longer: the API caps it) or the service's
  if extra and string.find(extra, '"ttl_s"', 1, true) then ttl = cjson.decode(extra).ttl_s end
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
if extra and string.find(extra, '"webhook"', 1, true) then
  local hook = cjson.decode(extra).webhook
  local names = RECORD_FIELDS
  local values = redis.call('HMGET', KEYS[1], unpack(names))
  local record = {}
  for i, name in ipairs(names) do record[name] = values[i] or '' end
  for _, kind in ipairs(hook.events) do
    local event_id = events[kind]
    if event_id then
      redis.call('LPUSH', KEYS[6], cjson.encode({
        id = 'msg_' .. id .. '_' .. (string.gsub(event_id, '-', '_')), url = hook.url, event = kind,
        attempt = 0, at = ARGV[6], record = record}))
    end
  end
end
return {'OK', attempt}
""".replace("RECORD_FIELDS", webhook_outbox.RECORD_FIELDS_LUA)

# KEYS: job hash. ARGV: the attempt that writes ('' for none), then field/value pairs. Writes only to a record
# that exists (never recreates a deleted one) and, from an attempt, only while that attempt is the job's.
_SET_FIELDS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

# KEYS: job hash, events stream. ARGV: event type, event json, maxlen, the attempt that writes, then field/value
# pairs. Writes only while that attempt runs, so a late or stale report cannot follow the final event.
_RUNNING_EVENT = """
local state = redis.call('HMGET', KEYS[1], 'status', 'attempts')
if state[1] ~= 'running' or state[2] ~= ARGV[4] then return 0 end
if #ARGV > 4 then redis.call('HSET', KEYS[1], unpack(ARGV, 5)) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', ARGV[1], 'data', ARGV[2])
return 1
"""

# KEYS: job hash, heartbeat key. ARGV: the attempt that beats, ttl_ms. Only the running attempt beats (its value
# names the attempt); a stale one is told so (0).
_BEAT = """
local state = redis.call('HMGET', KEYS[1], 'status', 'attempts')
if state[1] ~= 'running' or state[2] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: heartbeat key. ARGV: the attempt whose beat ends. Deletes only that attempt's beat, never its successor's.
_END_BEAT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Files:
    """Names of an attempt's files in storage: each attempt writes its own, and the record names the ones that
    count (a cut-off attempt that wakes up late can write only files nobody reads)."""

    CONTENT = "content"
    LEGACY_RESULT = "result.png"  # records written before attempts had files of their own
    LEGACY_PREVIEW = "preview.png"

    @staticmethod
    def style(index: int) -> str:
        return f"style-{index}"

    @staticmethod
    def style_mask(index: int) -> str:
        return f"style-mask-{index}"

    @staticmethod
    def result(attempt: int) -> str:
        return f"result-{attempt}.png"

    @staticmethod
    def preview(attempt: int) -> str:
        return f"preview-{attempt}.{PREVIEW_FORMAT}"

    @staticmethod
    def clip(attempt: int, format: str) -> str:
        return f"result-{attempt}.{format}"

    @staticmethod
    def poster(attempt: int) -> str:
        return f"poster-{attempt}.png"

    @staticmethod
    def frame(attempt: int, index: int) -> str:
        """A clip's painted frame `index` (0-based), as the attempt that painted it stored it."""
        return f"frame-{attempt}-{index:05d}.png"


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
    steps_done: int | None = None  # L-BFGS steps the run did, once it ended (fewer than asked when finished early)
    rq_job_id: str | None = None
    attempts: int = 0  # runs started; the latest is the running attempt, whose number fences its writes
    lost_attempts: int = 0  # runs whose worker died (requeues on a worker's SIGTERM do not count)
    result_file: str = Files.LEGACY_RESULT  # the winning attempt's result in storage
    preview_file: str = Files.LEGACY_PREVIEW  # the current attempt's latest preview
    owner: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # A clip's painted frames, in order, as [attempt, count] runs: which attempt's files hold them (fenced writes).
    clip_frames: list[list[int]] = field(default_factory=list)
    clip_style_factor: float | None = None  # the first frame's (nst_core/calibration.py): every later frame's too

    @property
    def kind(self) -> str:
        """The job's kind: "video" for a clip (its headers in extra["video"]), else "picture"."""
        return "video" if "video" in self.extra else "picture"

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> JobRecord:
        def num(name: str) -> float | None:
            return float(data[name]) if data.get(name) else None

        def js(name: str) -> Any:
            return json.loads(data[name]) if data.get(name) else None

        return cls(
            id=data["id"],
            status=JobStatus(data["status"]),
            created_at=float(data["created_at"]),
            params=js("params") or {},
            styles=int(data.get("styles", 1)),
            started_at=num("started_at"),
            finished_at=num("finished_at"),
            device=data.get("device") or None,
            precision=data.get("precision") or None,
            worker=data.get("worker") or None,
            error=js("error"),
            progress=js("progress"),
            preview_step=int(data["preview_step"]) if data.get("preview_step") else None,
            steps_done=int(data["steps_done"]) if data.get("steps_done") else None,
            rq_job_id=data.get("rq_job_id") or None,
            attempts=int(data.get("attempts", 0)),
            lost_attempts=int(data.get("lost_attempts") or 0),
            result_file=data.get("result_file") or Files.LEGACY_RESULT,
            preview_file=data.get("preview_file") or Files.LEGACY_PREVIEW,
            owner=data.get("owner") or None,
            extra=js("extra") or {},
            clip_frames=js("clip_frames") or [],
            clip_style_factor=num("clip_style_factor"),
        )


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
        self._set_fields = connection.register_script(_SET_FIELDS)
        self._beat = connection.register_script(_BEAT)
        self._end_beat = connection.register_script(_END_BEAT)

    def create(
        self,
        job_id: str,
        *,
        params: dict[str, Any],
        styles: int,
        owner: str | None = None,
        extra: dict[str, Any] | None = None,
        rq_job_id: str | None = None,
        now: float | None = None,
        pipeline: redis.client.Pipeline | None = None,
    ) -> JobRecord:
        """Write a new queued job; with `pipeline`, the writes are queued on it for the caller to execute
        (with the RQ job, in one transaction). Returns the record as written."""
        created = now if now is not None else time.time()
        mapping = {
            "id": job_id,
            "status": JobStatus.QUEUED.value,
            "created_at": repr(created),
            "params": json.dumps(params),
            "styles": str(styles),
            "attempts": "0",
            "owner": owner or "",
            "extra": json.dumps(extra or {}),
            "rq_job_id": rq_job_id or "",
        }
        pipe = pipeline if pipeline is not None else self.redis.pipeline()
        pipe.hset(Keys.job(job_id), mapping=cast("Mapping[FieldT, EncodableT]", mapping))
        pipe.xadd(
            Keys.events(job_id),
            {"type": "status", "data": json.dumps({"status": "queued"})},
            maxlen=EVENTS_MAXLEN,
            approximate=True,
        )
        pipe.zadd(Keys.jobs_index, {job_id: created})
        pipe.zadd(Keys.queued, {job_id: created})
        if owner:
            pipe.zadd(Keys.owner_jobs(owner), {job_id: created})
            pipe.sadd(Keys.owners, owner)
        pipe.hincrby(Keys.job_counts, "submitted", 1)
        if pipeline is None:
            pipe.execute()
        return JobRecord.from_hash(mapping)

    def get(self, job_id: str) -> JobRecord | None:
        data = self.redis.hgetall(Keys.job(job_id))
        return JobRecord.from_hash(texts(data)) if data else None

    def set_fields(self, job_id: str, *, attempt: int | None = None, **fields: Any) -> bool:
        """Set `fields` on the job's record; False (and nothing written) when the record is gone or, from an
        `attempt`, when that attempt is no longer the job's."""
        return bool(self._set_fields(keys=[Keys.job(job_id)], args=[_token(attempt), *_pairs(fields)]))

    def start(self, job_id: str, *, heartbeat_ttl_s: float, **fields: Any) -> int | None:
        """Move a queued job to running as a new attempt, with its first heartbeat; returns the attempt's
        number, the token every later write of that attempt carries (None when the job was not queued)."""
        reply = self._call_transition(
            self.redis, job_id, JobStatus.RUNNING, {JobStatus.QUEUED}, fields, heartbeat_ttl_s=heartbeat_ttl_s
        )
        return int(reply[1]) if _succeeded(reply) else None

    def transition(
        self,
        job_id: str,
        to: JobStatus,
        *,
        allowed: set[JobStatus] | frozenset[JobStatus],
        attempt: int | None = None,
        only_if_lost: bool = False,
        **fields: Any,
    ) -> bool:
        """Move the job to `to` if its status is in `allowed` (from an `attempt`: only while it is the job's
        attempt; with `only_if_lost`, only while no worker beats for it); set `fields` with it. False when it
        was not."""
        return _succeeded(
            self._call_transition(self.redis, job_id, to, allowed, fields, attempt=attempt, only_if_lost=only_if_lost)
        )

    def transition_in(
        self,
        pipeline: redis.client.Pipeline,
        job_id: str,
        to: JobStatus,
        *,
        allowed: set[JobStatus] | frozenset[JobStatus],
        attempt: int | None = None,
        **fields: Any,
    ) -> None:
        """Queue the same transition on `pipeline`, a transaction whose caller has checked (under WATCH)
        that it applies, so that it commits together with the caller's other writes."""
        self._call_transition(pipeline, job_id, to, allowed, fields, attempt=attempt)

    def _call_transition(
        self,
        client: Any,
        job_id: str,
        to: JobStatus,
        allowed: frozenset[JobStatus] | set[JobStatus],
        fields: dict[str, Any],
        *,
        attempt: int | None = None,
        only_if_lost: bool = False,
        heartbeat_ttl_s: float | None = None,
    ) -> Any:
        now = time.time()
        if to.terminal:
            fields.setdefault("finished_at", now)
        return self._transition(
            keys=[
                Keys.job(job_id),
                Keys.events(job_id),
                Keys.running,
                Keys.job_counts,
                Keys.queued,
                Keys.webhooks_pending,
                Keys.heartbeat(job_id),
            ],
            args=[
                to.value,
                ",".join(s.value for s in allowed),
                int(to.terminal),
                self.ttl_s,
                EVENTS_MAXLEN,
                repr(now),
                _token(attempt),
                int(only_if_lost),
                "" if heartbeat_ttl_s is None else int(heartbeat_ttl_s * 1000),
                *_pairs(fields),
            ],
            client=client,
        )

    def running_event(self, job_id: str, event_type: str, data: dict[str, Any], *, attempt: int, **fields: Any) -> bool:
        """Append a progress or preview event (and set `fields`) while `attempt` runs the job; False (nothing
        written) when it does not: the job ended, was deleted or requeued, or another attempt runs it."""
        return bool(
            self._running_event(
                keys=[Keys.job(job_id), Keys.events(job_id)],
                args=[event_type, json.dumps(data), EVENTS_MAXLEN, attempt, *_pairs(fields)],
            )
        )

    def beat(self, job_id: str, *, attempt: int, ttl_s: float) -> bool:
        """Prove `attempt` alive for `ttl_s`; False (nothing written) when it no longer runs the job."""
        return bool(self._beat(keys=[Keys.job(job_id), Keys.heartbeat(job_id)], args=[attempt, int(ttl_s * 1000)]))

    def end_beat(self, job_id: str, *, attempt: int) -> None:
        """Delete the heartbeat if it is `attempt`'s (never the beat of the attempt that replaced it)."""
        self._end_beat(keys=[Keys.heartbeat(job_id)], args=[attempt])

    def request_cancel(self, job_id: str) -> None:
        self.redis.set(Keys.cancel(job_id), 1, ex=self.ttl_s)

    def request_finish(self, job_id: str) -> None:
        self.redis.set(Keys.finish(job_id), 1, ex=self.ttl_s)

    def stop_requested(self, job_id: str) -> StopRequest | None:
        """What a client asked of the running job, in one read: cancel (wins over finish), finish, or nothing."""
        cancel, finish = self.redis.mget(Keys.cancel(job_id), Keys.finish(job_id))
        return StopRequest.CANCEL if cancel else StopRequest.FINISH if finish else None

    def delete(self, job_id: str) -> None:
        # The cancel flag stays (it expires): a worker still running the job must see it and stop.
        owner = text(self.redis.hget(Keys.job(job_id), "owner"))
        pipe = self.redis.pipeline()
        pipe.delete(Keys.job(job_id), Keys.events(job_id), Keys.heartbeat(job_id))
        pipe.zrem(Keys.jobs_index, job_id)
        pipe.zrem(Keys.queued, job_id)
        pipe.srem(Keys.running, job_id)
        if owner:
            pipe.zrem(Keys.owner_jobs(owner), job_id)
        pipe.execute()

    def recent(self, *, offset: int, limit: int, owner: str | None = None) -> tuple[list[JobRecord], int]:
        """One page, newest first, of every job (`owner` None) or of one owner's; reads only that page (ids
        of records that expired are dropped from the index on the way)."""
        index = Keys.owner_jobs(owner) if owner else Keys.jobs_index
        records: list[JobRecord] = []
        start = offset
        while len(records) < limit and start < self.redis.zcard(index):  # also keeps ZREVRANGE's range in int64
            ids = [text(i) for i in self.redis.zrevrange(index, start, start + limit - len(records) - 1)]
            if not ids:
                break
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(Keys.job(job_id))
            gone = []
            for job_id, data in zip(ids, pipe.execute()):
                if data:
                    records.append(JobRecord.from_hash(texts(data)))
                else:
                    gone.append(job_id)
            if gone:
                self.redis.zrem(index, *gone)
            start += len(ids) - len(gone)
        return records, self.redis.zcard(index)

    def prune_indexes(self, *, now: float | None = None) -> int:
        """Drop from the job indexes the ids whose records expired; returns how many went."""
        cutoff = (now if now is not None else time.time()) - self.ttl_s  # younger records cannot have expired
        indexes = [Keys.jobs_index, *(Keys.owner_jobs(text(o)) for o in self.redis.smembers(Keys.owners))]
        dropped = 0
        for index in indexes:
            ids = [text(i) for i in self.redis.zrangebyscore(index, "-inf", cutoff)]
            if not ids:
                continue
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.exists(Keys.job(job_id))
            gone = [job_id for job_id, exists in zip(ids, pipe.execute()) if not exists]
            if gone:
                dropped += self.redis.zrem(index, *gone)
        return dropped

    def queued_since(self, cutoff: float) -> list[str]:
        """Ids of jobs queued (last) before `cutoff`, from the queued index."""
        return [text(i) for i in self.redis.zrangebyscore(Keys.queued, "-inf", cutoff)]

    def take_lost(self) -> list[str]:
        """Running jobs whose worker stopped beating (killed, out of memory, machine lost); ids in the running set
        whose record is gone are removed from it."""
        found = []
        for raw in self.redis.smembers(Keys.running):
            job_id = text(raw)
            if self.redis.exists(Keys.heartbeat(job_id)):
                continue
            if self.redis.exists(Keys.job(job_id)):
                found.append(job_id)
            else:
                self.redis.srem(Keys.running, job_id)
        return found

    def fail_lost(self, job_id: str) -> bool:
        """Fail a lost job with `worker_lost`; False when it was no longer running."""
        return self.transition(
            job_id,
            JobStatus.FAILED,
            allowed={JobStatus.RUNNING},
            only_if_lost=True,
            error={
                "code": "worker_lost",
                "message": "the worker running this job stopped (killed, out of memory or its machine was lost)",
            },
        )


def parse_events(reply: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """XREAD's reply as (event id, type, data) tuples."""
    out = []
    for _stream, entries in reply or []:
        for event_id, fields in entries:
            fields = texts(fields)
            out.append((text(event_id), fields["type"], json.loads(fields["data"])))
    return out


def _token(attempt: int | None) -> str:
    """An attempt as the scripts take it: '' for a write that belongs to no attempt (the API, the sweeper)."""
    return "" if attempt is None else str(attempt)


def _succeeded(reply: Any) -> bool:
    return isinstance(reply, list) and text(reply[0]) == "OK"


def _pairs(fields: dict[str, Any]) -> list[str]:
    """Hash fields as the flat name, value list HSET and the scripts take."""
    return [item for name, value in fields.items() for item in (name, _encode(value))]


def _encode(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)
