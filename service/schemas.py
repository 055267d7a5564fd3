"""The public shapes of a job: what clients see (separate from the stored record)."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, Field

from nst_shared.job_status import JobStatus
from nst_shared.jobs import JobRecord


class ErrorDetail(BaseModel):
    code: str = Field(description="What went wrong, stable for programs: job_not_found, invalid_parameter, ...")
    message: str = Field(description="What went wrong, for people.")
    field: str | None = Field(None, description="The form field, parameter or header at fault, if one is.")


class ErrorBody(BaseModel):
    """The body of every refusal and failure of the API."""

    error: ErrorDetail


class Deleted(BaseModel):
    id: str
    deleted: bool


class JobError(BaseModel):
    code: str
    message: str


class JobLinks(BaseModel):
    self: str
    events: str
    result: str
    preview: str
    cancel: str
    finish: str


class ClipPublic(BaseModel):
    frames: int = Field(description="Frames of the clip (its headers' count).")
    frames_done: int = Field(description="Frames painted and stored so far.")
    fps: float
    duration_s: float
    width: int = Field(description="Frame width as uploaded (before any rotation the clip asks for).")
    height: int
    audio: bool = Field(description="Whether the clip has sound (kept, re-encoded, in the result).")
    format: Literal["mp4", "webm"] = Field(description="The result's format.")


class JobPublic(BaseModel):
    id: str
    status: JobStatus
    queue_position: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    params: dict[str, Any]
    steps_done: int | None = Field(
        None,
        description="L-BFGS steps the run did, once it has ended: at most "
        "params.steps, fewer when it was finished early or stopped at a plateau.",
    )
    styles: int
    device: str | None = None
    precision: str | None = Field(None, description="Number format the worker's network ran in: fp32 or bf16.")
    progress: dict[str, Any] | None = None
    preview_step: int | None = None
    attempts: int = 0
    error: JobError | None = None
    sweep_id: str | None = Field(None, description="The sweep this job is a cell of (POST /sweeps), if any.")
    kind: Literal["picture", "video"] = Field(
        "picture", description="video when the content was a clip: the result is then a video/mp4 or video/webm."
    )
    video: ClipPublic | None = Field(None, description="A clip's headers and how many of its frames are painted.")
    links: JobLinks


class JobList(BaseModel):
    items: list[JobPublic]
    total: int
    offset: int
    limit: int


def _clip(record: JobRecord) -> ClipPublic | None:
    clip = record.extra.get("video")
    if clip is None:
        return None
    return ClipPublic(
        frames=clip["frames"],
        frames_done=sum(count for _, count in record.clip_frames),
        fps=round(float(Fraction(clip["rate"])), 3),
        duration_s=clip["duration_s"],
        width=clip["width"],
        height=clip["height"],
        audio=clip["audio"],
        format=record.extra.get("video_format", "mp4"),
    )


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value is not None else None


def public_job(record: JobRecord, *, queue_position: int | None = None, token: str | None = None) -> JobPublic:
    """`token` (a signed link, when API keys are on) is added to the links a browser opens by URL."""
    base = f"/jobs/{record.id}"
    signed = f"?token={token}" if token else ""
    return JobPublic(
        id=record.id,
        status=record.status,
        queue_position=queue_position,
        created_at=_time(record.created_at),
        started_at=_time(record.started_at),
        finished_at=_time(record.finished_at),
        params=record.params,
        steps_done=record.steps_done,
        styles=record.styles,
        device=record.device,
        precision=record.precision,
        progress=record.progress,
        preview_step=record.preview_step,
        attempts=record.attempts,
        error=JobError(**record.error) if record.error else None,
        sweep_id=record.extra.get("sweep_id"),
        kind="video" if record.kind == "video" else "picture",
        video=_clip(record),
        links=JobLinks(
            self=base,
            events=f"{base}/events{signed}",
            result=f"{base}/result{signed}",
            preview=f"{base}/preview{signed}",
            cancel=f"{base}/cancel",
            finish=f"{base}/finish",
        ),
    )
