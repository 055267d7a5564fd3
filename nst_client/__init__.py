"""A typed Python client for the nst service (httpx; no torch)."""

from nst_client.client import AsyncNstClient, Event, Job, NstClient
from nst_client.errors import (ApiError, Conflict, InvalidRequest, JobNotFound, NstClientError,
                               ServiceUnavailable, TransportError, WaitTimeout)

__all__ = ["NstClient", "AsyncNstClient", "Job", "Event", "NstClientError", "ApiError", "JobNotFound",
           "InvalidRequest", "Conflict", "ServiceUnavailable", "TransportError", "WaitTimeout"]
