"""A typed Python client for the nst job service, on httpx (it does not import torch).

from nst_client import NstClient

with NstClient("http://127.0.0.1:8000") as nst:
    job = nst.submit("photo.jpg", ["starry.jpg"], steps=120)
    nst.wait(job.id, timeout_s=600)
    nst.download(job.id, "out.png")
"""

from nst_client.client import DEFAULT_SERVER, AsyncNstClient, NstClient
from nst_client.errors import (
    ApiError,
    AuthenticationError,
    Conflict,
    InvalidRequest,
    InvalidSignature,
    JobNotFound,
    NstClientError,
    ServiceUnavailable,
    TransportError,
    WaitTimeout,
)
from nst_client.events import Event
from nst_client.jobs import Job, JobError, JobPage, Progress
from nst_client.sweeps import Sweep, SweepCell
from nst_shared.job_status import JobStatus

__all__ = [
    "DEFAULT_SERVER",
    "ApiError",
    "AsyncNstClient",
    "AuthenticationError",
    "Conflict",
    "Event",
    "InvalidRequest",
    "InvalidSignature",
    "Job",
    "JobError",
    "JobNotFound",
    "JobPage",
    "JobStatus",
    "NstClient",
    "NstClientError",
    "Progress",
    "ServiceUnavailable",
    "Sweep",
    "SweepCell",
    "TransportError",
    "WaitTimeout",
]
