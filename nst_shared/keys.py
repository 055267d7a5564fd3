"""The Redis key layout, in one place (every key the service, the workers and the CLI use)."""

from __future__ import annotations

PREFIX = "nst"


class Keys:
    """The Redis key layout, in one place."""

    jobs_index = f"{PREFIX}:jobs"  # sorted set: job id -> created_at
    owners = f"{PREFIX}:owners"  # set of owners (API key hashes) with an index of their own
    queued = f"{PREFIX}:queued"  # sorted set: job id -> when it was last queued (the sweeper's check of RQ)
    queue_suspects = f"{PREFIX}:queue_suspects"  # hash: queued job id -> when first seen without its RQ job
    running = f"{PREFIX}:running"  # set of job ids a worker is running
    deadlines = f"{PREFIX}:deadlines"  # sorted set: job id -> its deadline (cancel_after), for the sweeper
    workers = f"{PREFIX}:workers"  # set of worker names; a worker is alive while its presence key lives
    sweeper = f"{PREFIX}:sweeper"  # the lease of the one process that sweeps (nst_shared/sweeper.py)
    # Metrics (nst_shared/job_metrics.py): hashes every API process reads at scrape time.
    job_counts = f"{PREFIX}:metrics:jobs"  # submitted, succeeded, failed, canceled -> count
    job_duration = f"{PREFIX}:metrics:job_duration"  # histogram "<status>|<le>", "<status>|sum", ...
    queue_wait = f"{PREFIX}:metrics:queue_wait"  # histogram "<le>", "sum", "count"
    iterations = f"{PREFIX}:metrics:iterations"  # "<device>|seconds", "<device>|count", "<device>|last"

    @staticmethod
    def job(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}"

    @staticmethod
    def events(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}:events"

    @staticmethod
    def cancel(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}:cancel"

    @staticmethod
    def finish(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}:finish"

    @staticmethod
    def heartbeat(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}:heartbeat"

    @staticmethod
    def idempotency(key: str) -> str:
        return f"{PREFIX}:idempotency:{key}"  # key: a hex digest, so never a sweep's below

    @staticmethod
    def sweep_idempotency(key: str) -> str:
        return f"{PREFIX}:idempotency:sweep:{key}"

    @staticmethod
    def webhook_progress_gate(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}:webhook_progress"  # set for NST_WEBHOOK_PROGRESS_INTERVAL_S per delivery

    @staticmethod
    def owner_jobs(owner: str) -> str:
        return f"{PREFIX}:owner:{owner}:jobs"  # sorted set: job id -> created_at, one owner's jobs

    @staticmethod
    def worker(name: str) -> str:
        return f"{PREFIX}:worker:{name}"

    @staticmethod
    def sweep(sweep_id: str) -> str:
        return f"{PREFIX}:sweep:{sweep_id}"

    @staticmethod
    def device(device_id: str) -> str:
        return f"{PREFIX}:device:{device_id}"  # hash: "pool" -> bytes; "w:<worker>" -> "<bytes> <expires at, ms>"

    @staticmethod
    def rate(kind: str, identity: str) -> str:
        return f"{PREFIX}:rate:{kind}:{identity}"  # a rate limit's counter (service/ratelimit.py)

    # The webhook outbox (nst_shared/webhook_outbox.py).
    webhooks_pending = f"{PREFIX}:webhooks:pending"  # list of deliveries ready to send
    webhooks_retry = f"{PREFIX}:webhooks:retry"  # sorted set: delivery -> time of its next attempt
    webhook_senders = f"{PREFIX}:webhooks:senders"  # set of sender ids that may hold deliveries in a processing list

    @staticmethod
    def webhook_processing(sender_id: str) -> str:
        return f"{PREFIX}:webhooks:processing:{sender_id}"  # list: the delivery a sender is working on

    @staticmethod
    def webhook_sender(sender_id: str) -> str:
        return f"{PREFIX}:webhooks:sender:{sender_id}"  # lives (a TTL the sender refreshes) while it runs
