"""The memory each worker offers, published in Redis, so the API refuses at once a job no worker could hold."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis

from nst_shared.jobs import PREFIX
from nst_shared.memory import MemoryPlan, plan_memory

KEY_PREFIX = f"{PREFIX}:worker-memory:"


@dataclass(frozen=True)
class WorkerMemory:
    """One worker's engine: its memory budget and the precision its network runs in (which sets its needs)."""

    worker: str
    budget_bytes: int
    precision: str
    device: str


def publish(connection: redis.Redis, offer: WorkerMemory, *, ttl_s: int) -> None:
    """Announce (or renew) a worker's offer; it lapses `ttl_s` after the last renewal, as the worker stops."""
    connection.set(KEY_PREFIX + offer.worker, json.dumps(asdict(offer)), ex=ttl_s)


def withdraw(connection: redis.Redis, worker: str) -> None:
    connection.delete(KEY_PREFIX + worker)


def published(connection: redis.Redis) -> list[WorkerMemory]:
    """The offers of the workers alive now (none when no worker has announced itself yet)."""
    offers = []
    for key in connection.scan_iter(match=KEY_PREFIX + "*", count=100):
        data = connection.get(key)
        if data:
            offers.append(WorkerMemory(**json.loads(data)))
    return offers


def best_fit(width: int, height: int, offers: list[WorkerMemory]) -> tuple[WorkerMemory, MemoryPlan] | None:
    """The offer a `width` x `height` picture fits best (the most room left), or the one it misses by the
    least when it fits none; None without offers."""
    plans = [(offer, plan_memory(width, height, precision=offer.precision, budget_bytes=offer.budget_bytes))
             for offer in offers]
    if not plans:
        return None
    return max(plans, key=lambda p: (p[1].fits, p[0].budget_bytes - p[1].peak_bytes))
