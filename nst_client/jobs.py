"""Jobs as the API shows them, as typed, frozen values (`raw` keeps every field of the JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nst_shared.job_status import JobStatus


@dataclass(frozen=True)
class Progress:
    """Where a running job is: `step` of `steps` (all scales), losses, speed and time left."""

    step: int
    steps: int
    fraction: float
    losses: dict[str, float]
    elapsed_s: float | None = None
    eta_s: float | None = None
    scale: int | None = None
    scales: int | None = None
    frame: int | None = None  # a clip's: the frame being painted (1-based) of `frames`; `step` is within it
    frames: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        steps = int(data.get("steps") or 0)
        step = int(data.get("step") or 0)
        return cls(
            step=step,
            steps=steps,
            fraction=float(data.get("fraction", step / steps if steps else 0.0)),
            losses={k: float(v) for k, v in (data.get("losses") or {}).items() if v is not None},
            elapsed_s=data.get("elapsed_s"),
            eta_s=data.get("eta_s"),
            scale=data.get("scale"),
            scales=data.get("scales"),
            frame=data.get("frame"),
            frames=data.get("frames"),
        )


@dataclass(frozen=True)
class JobError:
    """Why a job failed: a stable `code` (e.g. `worker_lost`, `out_of_memory`) and a short message."""

    code: str
    message: str


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass(frozen=True)
class Job:
    """One job: what `submit`, `get`, `cancel`, `finish`, `list_jobs` and the final event return."""

    id: str
    status: JobStatus
    created_at: datetime | None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    queue_position: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    steps_done: int | None = None  # once ended: the steps the run did (fewer than params["steps"] if finished early)
    styles: int = 0
    device: str | None = None
    precision: str | None = None  # the number format the worker's network ran in: fp32 or bf16
    progress: Progress | None = None
    error: JobError | None = None
    kind: str = "picture"  # "video" when the content was a clip: the result is then an MP4 or WebM
    video: dict[str, Any] | None = None  # a clip's frames, frames_done, fps, duration_s, size, audio, format
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """True once the job succeeded, failed or was canceled."""
        return self.status.terminal

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        error = data.get("error")
        return cls(
            id=data["id"],
            status=JobStatus(data["status"]),
            created_at=_time(data.get("created_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            queue_position=data.get("queue_position"),
            params=data.get("params") or {},
            steps_done=data.get("steps_done"),
            styles=int(data.get("styles") or 0),
            device=data.get("device"),
            precision=data.get("precision"),
            progress=Progress.from_json(data["progress"]) if data.get("progress") else None,
            error=JobError(error["code"], error["message"]) if error else None,
            kind=data.get("kind") or "picture",
            video=data.get("video"),
            raw=data,
        )


@dataclass(frozen=True)
class JobPage:
    """One page of `GET /jobs`, newest first."""

    items: list[Job]
    total: int
    offset: int
    limit: int
