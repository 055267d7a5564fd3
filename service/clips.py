"""A clip at submission: its headers read by a bounded child process (nst_shared/video_probe.py), never decoded
here, and the deployment's clip limits (NST_MAX_VIDEO_*), each refusal a 422 naming its limit."""

from __future__ import annotations

import threading

from fastapi import Response

from nst_shared.clip_info import MEDIA_TYPES, ClipInfo, clip_kind
from nst_shared.errors import ImageError
from nst_shared.images import fit_size
from nst_shared.jobs import Files, JobRecord
from nst_shared.params import TransferParams
from nst_shared.schedule import clip_cost
from nst_shared.settings import Settings
from nst_shared.storage import Storage
from nst_shared.video_probe import probe
from service.downloads import file_response
from service.errors import ApiError, from_image_error

_PROBES_AT_ONCE = threading.BoundedSemaphore(4)  # children of this process reading headers at once


def checked_clip(content: bytes, params: TransferParams, settings: Settings) -> ClipInfo | None:
    """The clip's headers once they pass every limit; None when `content` is not a clip (a picture)."""
    if clip_kind(content) is None:
        return None
    try:
        with _PROBES_AT_ONCE:
            info = probe(
                content, timeout_s=settings.video_probe_timeout_s, memory_bytes=settings.video_probe_memory_mb * 2**20
            )
    except ImageError as exc:
        raise from_image_error(exc, "content") from None
    check_limits(info, params, settings)
    return info


def check_limits(info: ClipInfo, params: TransferParams, settings: Settings) -> None:
    """422 naming the first limit the clip passes: frames, duration, frame size, then the step budget."""
    if info.frames > settings.max_video_frames:
        _refuse("video_too_many_frames", f"{info.frames} frames; at most {settings.max_video_frames}")
    if info.duration_s > settings.max_video_duration_s:
        _refuse("video_too_long", f"{info.duration_s:.1f} s; at most {settings.max_video_duration_s:g} s")
    if info.width * info.height > settings.max_video_frame_pixels:
        _refuse(
            "video_frame_too_large",
            f"frames of {info.width}x{info.height}; at most {settings.max_video_frame_pixels} pixels",
        )
    cost = clip_cost(params, info.frames, (info.width, info.height))
    if cost > settings.max_video_step_megapixels:
        width, height = fit_size(info.width, info.height, params.max_size)
        _refuse(
            "video_over_budget",
            f"{info.frames} frames at {width}x{height} cost {cost:.0f} steps x megapixels, over this "
            f"service's budget of {settings.max_video_step_megapixels:g} for a clip; lower frame_steps, steps or "
            "max_size, or send a shorter clip",
            field="frame_steps",
        )


def _refuse(code: str, message: str, *, field: str = "content") -> None:
    raise ApiError(422, code, f"{field}: {message}", field=field)


def clip_result(storage: Storage, record: JobRecord, *, accept: str | None, range_header: str | None) -> Response:
    """A clip's result: the video (by Range, so a player can seek), or its poster PNG when Accept asks for
    image/png and no video."""
    clip_format = record.extra.get("video_format", "mp4")
    wants_poster = "image/png" in (accept or "") and "video/" not in (accept or "")
    attempt = record.result_file.rsplit("-", 1)[-1].split(".")[0]
    name, media_type, suffix = (
        (Files.poster(int(attempt)), "image/png", "png")
        if wants_poster
        else (record.result_file, MEDIA_TYPES[clip_format], clip_format)
    )
    stored = storage.open(record.id, name)
    if stored is None:
        raise ApiError(404, "result_expired", "the result file is gone (expired or deleted)")
    headers = {"Content-Disposition": f'attachment; filename="nst-{record.id}.{suffix}"', "Vary": "Accept"}
    return file_response(stored, range_header=range_header, media_type=media_type, headers=headers)
