"""Which workers are alive: each refreshes a key with a short TTL; a worker that died stops counting within
that TTL (RQ's own registrations outlive a killed worker by minutes)."""

from __future__ import annotations

import redis

from nst_shared.jobs import Keys


def announce(connection: redis.Redis, name: str, *, ttl_s: float) -> None:
    """Worker `name` is alive for the next `ttl_s`."""
    pipe = connection.pipeline()
    pipe.sadd(Keys.workers, name)
    pipe.set(Keys.worker(name), 1, px=int(ttl_s * 1000))
    pipe.execute()


def withdraw(connection: redis.Redis, name: str) -> None:
    """Worker `name` stops (a clean exit: it stops counting at once)."""
    pipe = connection.pipeline()
    pipe.srem(Keys.workers, name)
    pipe.delete(Keys.worker(name))
    pipe.execute()


def live_workers(connection: redis.Redis) -> int:
    """How many workers announced themselves within their TTL; the names of the others are dropped."""
    names = list(connection.smembers(Keys.workers))
    if not names:
        return 0
    pipe = connection.pipeline(transaction=False)
    for name in names:
        pipe.exists(Keys.worker(name.decode() if isinstance(name, bytes) else name))
    alive = pipe.execute()
    dead = [name for name, exists in zip(names, alive) if not exists]
    if dead:
        connection.srem(Keys.workers, *dead)
    return sum(1 for exists in alive if exists)
