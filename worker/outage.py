"""Riding out a Redis outage (unreachable, or refusing writes): a call retried with a growing pause until Redis
answers again, or a deadline passes (the job's time limit), or the worker stops."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from nst_shared.redis_outages import REDIS_DOWN, is_redis_outage

log = logging.getLogger("nst.worker")

FIRST_WAIT_S = 0.1
MAX_WAIT_S = 5.0

T = TypeVar("T")


def until_redis_answers(
    call: Callable[[], T], *, what: str, deadline: float | None = None, stop: Callable[[], bool] | None = None
) -> T:
    """`call()`, again after each Redis outage (unreachable, or refusing writes), until it answers; the error
    is raised once
    `deadline` (time.monotonic()) would pass or `stop()` is true."""
    wait_s = FIRST_WAIT_S
    warned = False
    while True:
        try:
            result = call()
        except redis.exceptions.RedisError as exc:
            if not is_redis_outage(exc):
                raise
            if (deadline is not None and time.monotonic() + wait_s > deadline) or (stop is not None and stop()):
                raise
            if not warned:
                log.warning("%s: Redis does not answer or takes no writes (%s); trying again until it does", what, exc)
                warned = True
            time.sleep(wait_s)
            wait_s = min(wait_s * 2, MAX_WAIT_S)
            continue
        if warned:
            log.info("%s: Redis answers again", what)
        return result


__all__ = ["REDIS_DOWN", "until_redis_answers"]
