"""Worker logging: every line carries the id of the job being run (or '-')."""

from __future__ import annotations

import contextvars
import logging

current_job_id: contextvars.ContextVar[str] = contextvars.ContextVar("current_job_id", default="-")


class JobIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = current_job_id.get()
        return True


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(JobIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s job=%(job_id)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
