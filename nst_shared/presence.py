"""Which workers are alive, and what each runs on: each refreshes a hash with a short TTL; a worker that died
stops counting within that TTL (RQ's own registrations outlive a killed worker by minutes)."""

from __future__ import annotations

from collections.abc import Mapping

import redis
from redis.typing import EncodableT, FieldT

from nst_shared.keys import Keys
from nst_shared.redis_connection import text

# What a worker says of its engine (device, number format and why, GPU, the memory it may use at its peak);
# /readyz lists them, the API sizes jobs by the memory (nst_shared/capacity.py).
INFO_FIELDS: tuple[str, ...] = ("device", "precision", "precision_reason", "gpu", "memory_budget_bytes")


def announce(connection: redis.Redis, name: str, *, ttl_s: float, info: Mapping[str, str] | None = None) -> None:
    """Worker `name` is alive for the next `ttl_s`, running on `info` (INFO_FIELDS only)."""
    unknown = set(info or {}) - set(INFO_FIELDS)
    if unknown:
        raise ValueError(f"not worker info fields: {sorted(unknown)}")
    pipe = connection.pipeline()
    pipe.sadd(Keys.workers, name)
    fields: dict[FieldT, EncodableT] = {"alive": "1"}
    fields.update(info or {})
    pipe.hset(Keys.worker(name), mapping=fields)
    pipe.pexpire(Keys.worker(name), int(ttl_s * 1000))
    pipe.execute()


def withdraw(connection: redis.Redis, name: str) -> None:
    """Worker `name` stops (a clean exit: it stops counting at once)."""
    pipe = connection.pipeline()
    pipe.srem(Keys.workers, name)
    pipe.delete(Keys.worker(name))
    pipe.execute()


def live_workers(connection: redis.Redis) -> list[dict[str, str]]:
    """The workers that announced themselves within their TTL: name and INFO_FIELDS ('' where not said);
    the names of the others are dropped."""
    names = sorted(text(n) for n in connection.smembers(Keys.workers))
    if not names:
        return []
    pipe = connection.pipeline(transaction=False)
    for name in names:
        pipe.hmget(Keys.worker(name), ["alive", *INFO_FIELDS])
    found = pipe.execute()
    dead = [name for name, values in zip(names, found) if not values[0]]
    if dead:
        connection.srem(Keys.workers, *dead)
    return [
        {"name": name, **{f: (v or b"").decode() for f, v in zip(INFO_FIELDS, values[1:])}}
        for name, values in zip(names, found)
        if values[0]
    ]
