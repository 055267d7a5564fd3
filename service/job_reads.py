"""GET /jobs/{id}'s read: a job's record and its place in the queue in one Redis round trip, on the event loop
(the most frequent request: no thread-pool hop, no second round trip for a queued job's position)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis.asyncio as aioredis

from nst_shared.job_status import JobStatus
from nst_shared.jobs import JobRecord
from nst_shared.keys import Keys
from nst_shared.redis_connection import text

# KEYS: job hash, RQ queue list. Returns {the hash as a flat list, the 0-based queue index or nil}; the
# queue is searched only for a queued job (LPOS is O(queue length)).
_READ = """
local fields = redis.call('HGETALL', KEYS[1])
local status, rq_id = nil, nil
for i = 1, #fields, 2 do
  if fields[i] == 'status' then status = fields[i + 1] elseif fields[i] == 'rq_job_id' then rq_id = fields[i + 1] end
end
local position = false
if status == 'queued' and rq_id and rq_id ~= '' then position = redis.call('LPOS', KEYS[2], rq_id) end
return {fields, position}
"""


@dataclass(frozen=True)
class JobRead:
    """A job as read, its 1-based queue position (None unless queued), and an ETag of both."""

    record: JobRecord
    queue_position: int | None
    etag: str


class JobReader:
    """Reads jobs for the API through its asyncio Redis client."""

    def __init__(self, connection: aioredis.Redis, *, queue_key: str) -> None:
        self._read = connection.register_script(_READ)
        self._queue_key = queue_key

    async def read(self, job_id: str) -> JobRead | None:
        """The job, or None when it does not exist."""
        flat, index = await self._read(keys=[Keys.job(job_id), self._queue_key])
        if not flat:
            return None
        fields = {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}
        record = JobRecord.from_hash(fields)
        position = index + 1 if index is not None and record.status is JobStatus.QUEUED else None
        # Of what the public view is made of (the record and the position), not of its signed links, which
        # change every second while the job does not.
        digest = hashlib.sha1(repr((sorted(fields.items()), position)).encode()).hexdigest()
        return JobRead(record, position, f'"{digest}"')
