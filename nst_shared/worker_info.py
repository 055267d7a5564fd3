"""What each live worker runs on (device, number format and why, GPU), kept beside RQ's own record of the
worker so it lives and expires with it; /readyz shows it."""

from __future__ import annotations

import redis
from rq import Worker

FIELDS: tuple[str, ...] = ("device", "precision", "precision_reason", "gpu")
_PREFIX = "nst_"


def record_fields(**info: str) -> dict[str, str]:
    """The hash fields a worker adds to its RQ record (`FIELDS` only)."""
    unknown = set(info) - set(FIELDS)
    if unknown:
        raise ValueError(f"not worker info fields: {sorted(unknown)}")
    return {_PREFIX + name: value for name, value in info.items()}


def live_workers(connection: redis.Redis) -> list[dict[str, str]]:
    """One entry per registered worker: its name and the fields it recorded (empty for workers that did not)."""
    workers = Worker.all(connection=connection)
    with connection.pipeline(transaction=False) as pipeline:
        for worker in workers:
            pipeline.hmget(worker.key, [_PREFIX + name for name in FIELDS])
        values = pipeline.execute()
    return [{"name": worker.name, **{name: (value or b"").decode() for name, value in zip(FIELDS, found)}}
            for worker, found in zip(workers, values)]
