"""Housekeeping shared by the API and the workers: fail jobs whose worker died, delete expired files."""

from __future__ import annotations

import logging
import time

from nst_shared.jobs import JobStore, Keys
from nst_shared.storage import Storage

log = logging.getLogger("nst.sweeper")


def sweep(store: JobStore, storage: Storage, *, orphan_grace_s: float = 300,
          now: float | None = None) -> None:
    """One round: lost jobs become failed (worker_lost); folders of expired or deleted jobs go."""
    for job_id in store.reap_lost():
        log.warning("job %s: worker lost", job_id)
    current = now if now is not None else time.time()
    for job_id in storage.job_ids():
        if store.redis.exists(Keys.job(job_id)):
            continue
        # A job's files are written before its record exists: young files are left alone.
        modified_at = storage.modified_at(job_id)
        if modified_at is not None and current - modified_at > orphan_grace_s:
            storage.delete_job(job_id)
            log.info("job %s: files deleted (expired)", job_id)
