"""The client's exceptions: one root, `NstClientError`, each subclass saying when it is raised."""

from __future__ import annotations

from typing import Any


class NstClientError(Exception):
    """Root of everything the client raises on purpose."""


class TransportError(NstClientError):
    """Raised when the service cannot be reached, or an event stream keeps breaking after its retries."""


class WaitTimeout(NstClientError):
    """Raised by `wait` (and `events` given a `timeout_s`) when the job has not ended in time.

    The job itself goes on; cancel it if it is no longer wanted."""

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class InvalidSignature(NstClientError):
    """Raised by `nst_client.webhooks.verify_webhook` for a delivery that is not signed with the secret,
    lacks the headers, or is too old (a replay)."""


class ApiError(NstClientError):
    """Raised for an error answer of the API: carries the HTTP `status` and the body's `code`, `message`
    and `field` (`{"error": {"code", "message", "field"?}}`)."""

    def __init__(
        self, status: int, code: str, message: str, *, field: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{message} ({status} {code}" + (f", field {field})" if field else ")"))
        self.status, self.code, self.message, self.field = status, code, message, field
        self.retry_after_s = retry_after_s


class AuthenticationError(ApiError):
    """Raised on 401 and 403: the API key is missing or not accepted (by the service or a proxy before it)."""


class JobNotFound(ApiError):
    """Raised on 404: the job is unknown, deleted or expired (or its result file expired)."""


class InvalidRequest(ApiError):
    """Raised on 413, 415 and 422: an image or a parameter was refused; `field` names it."""


class Conflict(ApiError):
    """Raised on 409: the job is not in a state for this (no result yet, already finished)."""


class ServiceUnavailable(ApiError):
    """Raised on 429 and 503: the queue is full or the service's Redis is down; `retry_after_s` says when
    to try again when the service said so."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthenticationError,
    403: AuthenticationError,
    404: JobNotFound,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    429: ServiceUnavailable,
    503: ServiceUnavailable,
}


def error_for(status: int, body: Any, *, retry_after: str | None = None) -> ApiError:
    """The exception for an error answer; tolerates bodies that are not the API's (a proxy's HTML page)."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or "http_error")
    message = str(error.get("message") or f"HTTP {status}")
    try:
        retry_after_s = float(retry_after) if retry_after is not None else None
    except ValueError:
        retry_after_s = None
    kind = _BY_STATUS.get(status, ApiError)
    return kind(status, code, message, field=error.get("field"), retry_after_s=retry_after_s)
