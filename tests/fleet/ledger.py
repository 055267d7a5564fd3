"""The ledger of a bed run: what became of every job the API accepted, read from Redis and through the API.

A result is stale when the picture the API serves was painted by another attempt than the one the job's
record names (its provenance says which), or when a job that did not succeed has a result served at all.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from nst_shared import provenance
from nst_shared.jobs import JobRecord
from nst_shared.keys import Keys


@dataclass
class Ledger:
    accepted: int = 0
    succeeded: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # error code -> jobs
    canceled: int = 0
    lost: int = 0  # accepted, and its record is gone
    stuck: int = 0  # accepted, and still queued or running when the ledger is taken
    stale_results: int = 0
    notes: list[str] = field(default_factory=list)  # one line per job that is lost, stuck or stale

    def render(self) -> str:
        failed = ", ".join(f"{code} {n}" for code, n in sorted(self.failed.items())) or "0"
        lines = [
            f"accepted {self.accepted}  succeeded {self.succeeded}  failed {failed}  canceled {self.canceled}",
            f"lost {self.lost}  stuck {self.stuck}  results written by a stale attempt {self.stale_results}",
        ]
        return "\n".join(lines + [f"  {note}" for note in self.notes])

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())


def record_attempt(record: JobRecord) -> int:
    """The attempt the record names as the job's (its latest)."""
    return record.attempts


def result_attempt(picture: bytes, job_id: str) -> int | None:
    """The attempt of job `job_id` that the picture's provenance names (None when it names none)."""
    job = (provenance.read(picture) or {}).get("job") or {}
    return int(job["attempt"]) if job.get("id") == job_id and job.get("attempt") is not None else None


def take(connection: redis.Redis, api: httpx.Client, job_ids: list[str]) -> Ledger:
    """The ledger of `job_ids` (those the API accepted), with every served result's provenance checked."""
    ledger = Ledger(accepted=len(job_ids))
    failed: collections.Counter[str] = collections.Counter()
    for job_id in job_ids:
        data = connection.hgetall(Keys.job(job_id))
        if not data:
            ledger.lost += 1
            ledger.notes.append(f"{job_id}: lost (no record)")
            continue
        record = JobRecord.from_hash({k.decode(): v.decode() for k, v in data.items()})
        served = api.get(f"/jobs/{job_id}/result")
        if record.status.value == "succeeded":
            ledger.succeeded += 1
            attempt = result_attempt(served.content, job_id) if served.status_code == 200 else None
            if served.status_code != 200 or attempt != record_attempt(record):
                ledger.stale_results += 1
                ledger.notes.append(
                    f"{job_id}: result {served.status_code} by attempt {attempt}, the record names "
                    f"{record_attempt(record)}"
                )
        else:
            if served.status_code == 200:
                ledger.stale_results += 1
                ledger.notes.append(f"{job_id}: {record.status.value}, yet a result is served")
            if record.status.value == "failed":
                failed[(record.error or {}).get("code", "?")] += 1
            elif record.status.value == "canceled":
                ledger.canceled += 1
            else:
                ledger.stuck += 1
                ledger.notes.append(f"{job_id}: stuck {record.status.value}")
    ledger.failed = dict(failed)
    return ledger


def events(connection: redis.Redis, job_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The job's event stream: (stream id, type, data), oldest first."""
    return [
        (entry_id.decode(), fields[b"type"].decode(), json.loads(fields[b"data"]))
        for entry_id, fields in connection.xrange(Keys.events(job_id))
    ]
