"""Job metrics kept in Redis: workers on any host record them, every API process reports the same numbers.

Counters of submitted and finished jobs are kept by `JobStore` (in the same Lua script that changes a
job's status, so each job counts once); this module records the histograms and per-device iteration times,
and reads everything back for `/metrics`."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import redis

from nst_shared.job_status import JobStatus
from nst_shared.keys import Keys
from nst_shared.redis_connection import texts

log = logging.getLogger("nst.metrics")

# Seconds. A job runs for seconds (GPU, small) to many minutes (CPU, large); queue waits likewise.
DURATION_BUCKETS_S = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)
QUEUE_WAIT_BUCKETS_S = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
FINISHED = tuple(status.value for status in JobStatus if status.terminal)


def _observe(pipe: Any, key: str, buckets: tuple[float, ...], value: float, label: str = "") -> None:
    prefix = f"{label}|" if label else ""
    for bound in (*buckets, math.inf):
        if value <= bound:  # cumulative buckets, as Prometheus exposes them
            pipe.hincrby(key, f"{prefix}{_le(bound)}", 1)
    pipe.hincrby(key, f"{prefix}count", 1)
    pipe.hincrbyfloat(key, f"{prefix}sum", value)


def _record(pipe: Any) -> None:
    # Metrics never fail a job: with Redis away, the observation is dropped (the job's own writes will fail).
    try:
        pipe.execute()
    except redis.exceptions.RedisError as exc:
        log.warning("metrics not recorded: %s", exc)


def observe_queue_wait(connection: redis.Redis, wait_s: float) -> None:
    """A job was taken by a worker `wait_s` after it was submitted."""
    pipe = connection.pipeline(transaction=True)
    _observe(pipe, Keys.queue_wait, QUEUE_WAIT_BUCKETS_S, max(wait_s, 0.0))
    _record(pipe)


def observe_job_duration(connection: redis.Redis, status: str, duration_s: float) -> None:
    """A job a worker ran ended with `status` after `duration_s` of running."""
    pipe = connection.pipeline(transaction=True)
    _observe(pipe, Keys.job_duration, DURATION_BUCKETS_S, max(duration_s, 0.0), label=status)
    _record(pipe)


def observe_iterations(connection: redis.Redis, device: str, iterations: int, elapsed_s: float) -> None:
    """A run on `device` did `iterations` optimiser steps in `elapsed_s`."""
    if iterations <= 0:
        return
    pipe = connection.pipeline(transaction=True)
    pipe.hincrbyfloat(Keys.iterations, f"{device}|seconds", elapsed_s)
    pipe.hincrby(Keys.iterations, f"{device}|count", iterations)
    pipe.hset(Keys.iterations, f"{device}|last", repr(elapsed_s / iterations))
    _record(pipe)


@dataclass
class Histogram:
    """Cumulative bucket counts (upper bound -> count, +Inf last), count and sum."""

    buckets: list[tuple[float, int]]
    count: int = 0
    sum: float = 0.0


@dataclass
class Snapshot:
    """Every job metric, read in one round trip."""

    counts: dict[str, int]
    running: int
    queue_wait: Histogram
    durations: dict[str, Histogram]
    iteration_seconds: dict[str, float] = field(default_factory=dict)
    iteration_count: dict[str, int] = field(default_factory=dict)
    last_seconds_per_iteration: dict[str, float] = field(default_factory=dict)


def read_snapshot(connection: redis.Redis) -> Snapshot:
    pipe = connection.pipeline(transaction=True)
    pipe.hgetall(Keys.job_counts)
    pipe.scard(Keys.running)
    pipe.hgetall(Keys.queue_wait)
    pipe.hgetall(Keys.job_duration)
    pipe.hgetall(Keys.iterations)
    counts, running, wait, durations, iterations = pipe.execute()
    counts, wait, durations, iterations = (texts(h) for h in (counts, wait, durations, iterations))
    snapshot = Snapshot(
        counts={k: int(v) for k, v in counts.items()},
        running=int(running),
        queue_wait=_histogram(wait, QUEUE_WAIT_BUCKETS_S, ""),
        durations={s: _histogram(durations, DURATION_BUCKETS_S, s) for s in FINISHED},
    )
    for name, value in iterations.items():
        device, _, what = name.rpartition("|")
        if what == "seconds":
            snapshot.iteration_seconds[device] = float(value)
        elif what == "count":
            snapshot.iteration_count[device] = int(value)
        elif what == "last":
            snapshot.last_seconds_per_iteration[device] = float(value)
    return snapshot


def _histogram(data: dict[str, str], buckets: tuple[float, ...], label: str) -> Histogram:
    prefix = f"{label}|" if label else ""
    return Histogram(
        buckets=[(b, int(data.get(f"{prefix}{_le(b)}", 0))) for b in (*buckets, math.inf)],
        count=int(data.get(f"{prefix}count", 0)),
        sum=float(data.get(f"{prefix}sum", 0.0)),
    )


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)
