"""The client's exceptions: one root, each saying when it is raised."""

from __future__ import annotations


class NstClientError(Exception):
    """Root of everything the client raises."""


class TransportError(NstClientError):
    """Raised when the service cannot be reached or the connection breaks."""


class WaitTimeout(NstClientError):
    """Raised by `wait` when the job is not finished within the given time."""


class ApiError(NstClientError):
    """Raised for an error answer of the API; carries its status, code, message and field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.field = status, code, message, field


class JobNotFound(ApiError):
    """Raised on 404: the job is unknown, deleted or expired."""


class InvalidRequest(ApiError):
    """Raised on 413, 415 and 422: a parameter or an image was refused; `field` names it."""


class Conflict(ApiError):
    """Raised on 409: the job is not in a state for this (no result yet, already finished)."""


class ServiceUnavailable(ApiError):
    """Raised on 429 and 503: the service is busy or its store is down; try again later."""


def error_for(status: int, body: object) -> ApiError:
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code, message = error.get("code", "http_error"), error.get("message", f"HTTP {status}")
    kind = {404: JobNotFound, 409: Conflict, 413: InvalidRequest, 415: InvalidRequest, 422: InvalidRequest,
            429: ServiceUnavailable, 503: ServiceUnavailable}.get(status, ApiError)
    return kind(status, code, message, error.get("field"))
