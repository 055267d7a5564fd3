"""A worker's share of the GPU it runs on, when other workers share that GPU (NST_WORKERS_PER_GPU): reserved
in Redis before the engine is built, so the engine plans with it and the API's capacity check believes it."""

from __future__ import annotations

import logging

import redis

from nst_shared.device_budget import DeviceBudget
from nst_shared.memory import format_bytes
from nst_shared.settings import Settings
from worker.engine import engine_class
from worker.outage import until_redis_answers

log = logging.getLogger("nst.worker")


class NoMemoryLeft(SystemExit):
    """Raised when the workers already on the GPU reserved its whole pool: this worker has nothing to plan with."""


def reserve_gpu_share(connection: redis.Redis, settings: Settings, *, worker: str) -> DeviceBudget | None:
    """This worker's reservation on its GPU; None on a CPU, or when NST_WORKER_MEMORY_GB sets the budget."""
    if settings.worker_memory_gb:
        return None
    measure = getattr(engine_class(settings), "device_memory", None)  # the engine knows its device
    device = measure(settings.device) if measure is not None else None
    if device is None:
        return None
    share = DeviceBudget(connection, device, worker=worker, ttl_s=settings.heartbeat_ttl_s)
    budget = until_redis_answers(lambda: share.reserve(share=settings.workers_per_gpu), what="reserving GPU memory")
    if budget <= 0:
        raise NoMemoryLeft(
            f"nst-worker: no memory left on GPU {device.device_id}: the workers already on it reserved its pool "
            f"(NST_WORKERS_PER_GPU={settings.workers_per_gpu}; raise it to start more workers on one GPU)"
        )
    log.info(
        "GPU %s: %s of %s free reserved (1/%d of the pool)",
        device.device_id,
        format_bytes(budget),
        format_bytes(device.free_bytes),
        settings.workers_per_gpu,
    )
    return share
