"""The memory each live worker offers (it says so with its presence), or, while none is alive, what the deployment
says its workers will offer, so the API refuses at once a job no worker could hold."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from nst_shared.memory import MemoryPlan, plan_memory
from nst_shared.presence import live_workers
from nst_shared.settings import Settings


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


def configured_offers(settings: Settings) -> list[WorkerMemory]:
    """What NST_WORKER_MEMORY_GB promises of the workers to come (scaled to zero, not started yet); none when it is
    unset. Under NST_PRECISION=auto it is sized as fp32, the larger need, so what it accepts fits either precision."""
    if settings.worker_memory_gb <= 0:
        return []
    precision = settings.precision if settings.precision in ("fp32", "bf16") else "fp32"
    return [
        WorkerMemory(
            worker="NST_WORKER_MEMORY_GB",
            budget_bytes=int(settings.worker_memory_gb * 2**30),
            precision=precision,
            device="configured",
        )
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
