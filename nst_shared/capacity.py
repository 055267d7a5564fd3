"""The memory each live worker offers (it says so with its presence), so the API refuses at once a job no worker
could hold."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from nst_shared.memory import MemoryPlan, plan_memory
from nst_shared.presence import live_workers


@dataclass(frozen=True)
class WorkerMemory:
    """One worker's engine: its memory budget and the precision its network runs in (which sets its needs)."""

    worker: str
    budget_bytes: int
    precision: str
    device: str


def offers(connection: redis.Redis) -> list[WorkerMemory]:
    """The offers of the workers alive now (none when no worker has announced itself yet)."""
    return [
        WorkerMemory(
            worker=w["name"], budget_bytes=int(w["memory_budget_bytes"]), precision=w["precision"], device=w["device"]
        )
        for w in live_workers(connection)
        if w["memory_budget_bytes"]
    ]


def best_fit(width: int, height: int, offers: list[WorkerMemory]) -> tuple[WorkerMemory, MemoryPlan] | None:
    """The offer a `width` x `height` picture fits best (the most room left), or the one it misses by the
    least when it fits none; None without offers."""
    plans = [
        (offer, plan_memory(width, height, precision=offer.precision, budget_bytes=offer.budget_bytes))
        for offer in offers
    ]
    if not plans:
        return None
    return max(plans, key=lambda p: (p[1].fits, p[0].budget_bytes - p[1].peak_bytes))
