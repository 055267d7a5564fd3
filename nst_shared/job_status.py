"""A job's status, redis-free: the service's records and the client library (nst_client) share it."""

from __future__ import annotations

import enum


class JobStatus(str, enum.Enum):
    """A job's status; a `str`, so `job.status == "succeeded"` works too."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    def __str__(self) -> str:
        return self.value


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
