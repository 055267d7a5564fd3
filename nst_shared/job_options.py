"""A job's options beside its picture's parameters: the result's file format, a deadline and a retention. They
decide how the picture is delivered and kept, never what it looks like (that is nst_shared/params.py's)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

ResultFormat = Literal["png", "webp", "jpeg", "avif"]
VideoFormat = Literal["mp4", "webm"]
RESULT_FORMATS: tuple[str, ...] = get_args(ResultFormat)
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg", "avif": "image/avif"}
# What a lossy format is encoded at when no quality is given (PNG is lossless and ignores it).
DEFAULT_QUALITY = 90
PREVIEW_FORMAT, PREVIEW_QUALITY = "webp", 80  # previews: small files for the page, not kept
MAX_CANCEL_AFTER_S = 7 * 24 * 3600

# Error codes of a job its deadline canceled: why it ended, since its status is plain `canceled`.
DEADLINE_NOT_STARTED = "deadline_not_started"
DEADLINE_EXCEEDED = "deadline_exceeded"


class JobOptions(BaseModel):
    """The form fields of a submission that are not picture parameters (the deployment caps ttl_s in
    service/caps.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Annotated[
        ResultFormat,
        Field(
            description="File format of the result: png (lossless), webp, jpeg or avif; a download's Accept "
            "header may ask for another."
        ),
    ] = "png"
    quality: Annotated[
        int | None,
        Field(ge=1, le=100, description=f"Quality of a lossy result format, 1-100 (default {DEFAULT_QUALITY})."),
    ] = None
    video_format: Annotated[
        VideoFormat,
        Field(description="File format of a clip's result: mp4 (H.264 and AAC) or webm (VP9 and Opus)."),
    ] = "mp4"
    cancel_after: Annotated[
        float | None,
        Field(
            gt=0,
            le=MAX_CANCEL_AFTER_S,
            description="Seconds after submission by which the job must have ended; past them it is canceled "
            f"(error {DEADLINE_NOT_STARTED} if it never started, {DEADLINE_EXCEEDED} if it was running).",
        ),
    ] = None
    ttl_s: Annotated[
        int | None,
        Field(
            ge=60,
            description="Seconds the finished job and its files are kept, at most (and by default) NST_RESULT_TTL_S.",
        ),
    ] = None

    def record_extra(self) -> dict[str, Any]:
        """What the job record keeps of these options (only what was set): read back by the worker, the
        sweeper, the transition script (ttl_s) and the downloads."""
        extra: dict[str, Any] = {}
        if self.format != "png" or self.quality is not None:
            extra["output"] = {"format": self.format, "quality": self.quality}
        if self.video_format != "mp4":
            extra["video_format"] = self.video_format
        if self.cancel_after is not None:
            extra["cancel_after"] = self.cancel_after
        if self.ttl_s is not None:
            extra["ttl_s"] = self.ttl_s
        return extra


def deadline_of(created_at: float, extra: dict[str, Any]) -> float | None:
    """The Unix time by which a job must have ended, or None."""
    cancel_after = extra.get("cancel_after")
    return created_at + float(cancel_after) if cancel_after else None


def output_of(extra: dict[str, Any]) -> tuple[str, int]:
    """(format, quality) a job's record asks its result in."""
    output = extra.get("output") or {}
    return output.get("format", "png"), output.get("quality") or DEFAULT_QUALITY
