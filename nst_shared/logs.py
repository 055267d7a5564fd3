"""Logging of the API and the workers: one JSON object a line (or text), each with the job id and the
request id of the moment, so a job can be followed through every process with one filter."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

current_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_job_id", default=None)
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=` and goes into the JSON
# (but uvicorn's color_message, a copy of the message with ANSI colours).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class ContextFilter(logging.Filter):
    """Puts the current job id and request id on each record (an explicit `extra=` value wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = current_job_id.get()
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """time (UTC, ISO 8601), level, logger, message, job_id, request_id, the `extra=` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "job_id": getattr(record, "job_id", None),
            "request_id": getattr(record, "request_id", None),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in line:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s job=%(job_id)s req=%(request_id)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.job_id = record.job_id or "-"  # type: ignore[attr-defined]
        record.request_id = record.request_id or "-"  # type: ignore[attr-defined]
        return super().format(record)


def configure_logging(*, level: str = "INFO", fmt: str = "json") -> None:
    """One handler on the root logger (stderr); uvicorn's and RQ's loggers go through it too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn set up its own handlers before it imported the app: send its lines through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
