"""What GET /metrics shows: job metrics read from Redis at scrape time (so any API process answers for all
workers, on any host), plus this API process's own resource use."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import redis
from prometheus_client import CollectorRegistry, Counter, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from rq import Queue

from nst_shared import job_metrics
from nst_shared.presence import live_workers


class JobCollector(Collector):
    """Reads the job metrics from Redis on every scrape; `nst_redis_up` 0 when Redis does not answer."""

    def __init__(self, connection: redis.Redis, queue_name: str) -> None:
        self._redis = connection
        self._queue_name = queue_name

    def collect(self) -> Iterator[Metric]:
        try:
            snapshot = job_metrics.read_snapshot(self._redis)
            queue = Queue(self._queue_name, connection=self._redis)
            depth = queue.count
            workers = live_workers(self._redis)
        except redis.exceptions.RedisError:
            yield GaugeMetricFamily("nst_redis_up", "1 when Redis answered this scrape.", value=0)
            return
        yield GaugeMetricFamily("nst_redis_up", "1 when Redis answered this scrape.", value=1)
        yield CounterMetricFamily(
            "nst_jobs_submitted", "Jobs accepted by the API.", value=snapshot.counts.get("submitted", 0)
        )
        finished = CounterMetricFamily("nst_jobs_finished", "Jobs that ended, by final status.", labels=["status"])
        for status in job_metrics.FINISHED:
            finished.add_metric([status], snapshot.counts.get(status, 0))
        yield finished
        yield GaugeMetricFamily("nst_jobs_running", "Jobs a worker is running now.", value=snapshot.running)
        yield GaugeMetricFamily("nst_queue_depth", "Jobs waiting in the queue.", value=depth)
        yield GaugeMetricFamily(
            "nst_workers", "Live workers (each beat within NST_HEARTBEAT_TTL_S).", value=len(workers)
        )
        duration = HistogramMetricFamily(
            "nst_job_duration_seconds", "Running time of jobs a worker ran, by final status.", labels=["status"]
        )
        for status, histogram in snapshot.durations.items():
            duration.add_metric([status], _buckets(histogram), histogram.sum)
        yield duration
        wait = HistogramMetricFamily("nst_job_queue_wait_seconds", "Time from submission to a worker taking the job.")
        wait.add_metric([], _buckets(snapshot.queue_wait), snapshot.queue_wait.sum)
        yield wait
        iterations = SummaryMetricFamily(
            "nst_iteration_seconds",
            "Optimiser iterations and their time, by device (rate of _sum over rate of _count: seconds per iteration).",
            labels=["device"],
        )
        for device, count in sorted(snapshot.iteration_count.items()):
            iterations.add_metric([device], count, snapshot.iteration_seconds.get(device, 0.0))
        yield iterations
        last = GaugeMetricFamily(
            "nst_seconds_per_iteration",
            "Mean seconds per iteration of the latest job on each device.",
            labels=["device"],
        )
        for device, value in sorted(snapshot.last_seconds_per_iteration.items()):
            last.add_metric([device], value)
        yield last


def _buckets(histogram: job_metrics.Histogram) -> list[tuple[str, float]]:
    return [("+Inf" if bound == float("inf") else repr(bound), count) for bound, count in histogram.buckets]


@dataclass(frozen=True)
class ApiCounters:
    """What this API process counts itself: answers that are neither a success nor our bug."""

    storage_refusals: Counter
    client_disconnects: Counter


def build_registry(connection: redis.Redis, queue_name: str) -> tuple[CollectorRegistry, ApiCounters]:
    """A registry of this app alone (not the global one), so several apps in a process never collide."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobCollector(connection, queue_name))
    ProcessCollector(registry=registry)
    counters = ApiCounters(
        storage_refusals=Counter(
            "nst_storage_refusals",
            "Submissions refused because the storage took no writes (full disk or bucket: 507; else 503).",
            ["code"],
            registry=registry,
        ),
        client_disconnects=Counter(
            "nst_client_disconnects",
            "Requests whose client went away before the answer (logged as 499, not a server error).",
            registry=registry,
        ),
    )
    return registry, counters
