"""A clip's job on the worker: frames painted one after another (nst_core/video.py's ClipPainter), each stored as
it finishes and recorded in the job's `clip_frames` by a write fenced with the attempt, so a next attempt goes
on from the last finished frame; then the clip encoded with its sound (nst_shared/video_io.py).

Stopping: SIGTERM requeues (the frames stay), cancel and a deadline make no clip (the frames go with the job's
files), finish-now encodes the frames done (the one being painted included, as far as it got).
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from nst_core.progress import StopTransfer
from nst_shared import painting
from nst_shared.clip_info import ClipInfo
from nst_shared.images import encode_image
from nst_shared.job_options import DEADLINE_EXCEEDED
from nst_shared.job_status import JobStatus
from nst_shared.jobs import Files, JobRecord, StopRequest
from nst_shared.params import TransferParams
from nst_shared.webhook_progress import ProgressDeliveries
from worker.progress_writer import BackgroundWriter, ProgressWriter, Written

if TYPE_CHECKING:
    from worker.tasks import JobRun

log = logging.getLogger("nst.worker")


def paint_clip(run: JobRun, engine: Any, record: JobRecord) -> str:
    """Paint the job's clip from its first unfinished frame; returns the run's outcome as run_job does."""
    from nst_core.video import ClipPainter  # the engine's side (torch): only a clip's job loads it
    from nst_shared.video_io import encode_clip, iter_frames  # FFmpeg: likewise
    from worker import tasks

    job_id, storage, settings = run.job_id, run.storage, run.settings
    info = ClipInfo.from_dict(record.extra["video"])
    clip_format = record.extra.get("video_format", "mp4")
    files = painting.Inputs(
        content=tasks._input(storage, job_id, Files.CONTENT),
        styles=[tasks._input(storage, job_id, Files.style(i)) for i in range(record.styles)],
        masks=[tasks._input(storage, job_id, Files.style_mask(i)) for i in range(record.extra.get("style_masks", 0))],
    )
    styles, masks = painting.decode_styles(files, max_pixels=settings.max_image_pixels)
    params = painting.applied_params(
        engine,
        TransferParams.from_dict(record.params),
        explicit=frozenset(record.extra.get("explicit", record.params)),
        caps=settings,
        size=(info.width, info.height),
    )
    run.write_params(params, record)
    attempt = run.attempt
    runs = [list(r) for r in record.clip_frames]  # [attempt, count] runs of the finished frames
    done = sum(count for _, count in runs)
    painter = ClipPainter(engine, styles, params, style_masks=masks)
    writer = ProgressWriter(run.store, job_id, attempt=attempt)
    background = BackgroundWriter(writer)
    hook = ProgressDeliveries.for_job(run.store, job_id, run.extra, interval_s=settings.webhook_progress_interval_s)
    preview_file = Files.preview(attempt)
    reason: dict[str, str] = {}
    frame_times: dict[int, float] = {}  # frame index -> seconds, of the frames this attempt painted
    steps_done = 0
    partial: Image.Image | None = None  # the frame a finish-now stopped, as far as it got
    if done:
        log.info("resuming the clip at frame %d of %d", done + 1, info.frames)

    def on_progress(index: int, progress: Any) -> None:
        data = tasks._progress_event(progress)
        frame_fraction = data["fraction"] or 0.0
        data.update(
            frame=index + 1,
            frames=info.frames,
            frame_fraction=frame_fraction,
            fraction=(index + frame_fraction) / info.frames,
            eta_s=_eta_s(frame_times, index, frame_fraction, info.frames, min(1.0, params.frame_steps / params.steps)),
        )
        background.post("progress", data, progress=data)
        if background.stop is None:
            hook.offer(data)
        stop = background.stop or run.stop_reason()
        if stop is not None:
            reason["stop"] = stop
            raise StopTransfer()

    with tempfile.TemporaryDirectory(prefix="nst-clip-") as folder:
        clip_path = Path(folder) / "clip"
        clip_path.write_bytes(files.content)
        try:
            first: Image.Image | None = None
            for index, frame in enumerate(iter_frames(clip_path, info, max_pixels=info.width * info.height)):
                first = first or frame
                if index < done:
                    if index == done - 1:  # the last finished frame: the painting goes on from it
                        last_painted = _load_frame(storage, job_id, runs, index)
                        painter.resume(
                            first_frame=first,
                            previous_frame=frame,
                            previous_painted=last_painted,
                            # 1: a clip started before the first frame's factor was recorded
                            style_factor=record.clip_style_factor or 1.0,
                        )
                    continue
                started = time.monotonic()
                result = painter.paint(frame, callback=functools.partial(on_progress, index))
                steps_done += result.steps_done
                if reason:
                    partial = result.image
                    break
                frame_times[index] = time.monotonic() - started
                name = Files.frame(attempt, index)
                run.write_result(name, encode_image(result.image, "PNG"))
                runs = _counted(runs, attempt)
                record_frame = functools.partial(
                    run.store.running_event,
                    job_id,
                    "frame",
                    {"frame": index + 1, "frames": info.frames},
                    attempt=attempt,
                    clip_frames=runs,
                    clip_style_factor=result.style_factor,
                )
                if not run.retried(record_frame, "the finished frame"):
                    reason["stop"] = "gone"
                    break
                done = index + 1
                background.post(
                    "preview",
                    {"step": done, "frame": done},
                    store=functools.partial(run.store_preview, preview_file, result.image, done),
                    preview_step=done,
                    preview_file=preview_file,
                )
        finally:
            background.close()
        stop = reason.get("stop")
        if stop == "shutdown":
            return run.requeue()
        if stop == "gone" or run.retried(writer.flush, "the last progress") is Written.NOT_RUNNING:
            return run.not_ours("stopped")
        if stop in (StopRequest.CANCEL, "deadline"):
            error = {"code": DEADLINE_EXCEEDED, "message": "the job did not finish within its cancel_after"}
            if not run.end(JobStatus.CANCELED, **({"error": error} if stop == "deadline" else {})):
                return run.not_ours("canceled")
            log.info("canceled after %d of %d frames", done, info.frames)
            return "canceled"
        painted = done + (partial is not None)
        if not painted:
            return run.fail("no_frames", "the clip has no frame to paint")
        finished = (_load_frame(storage, job_id, runs, i) for i in range(done))  # one at a time, from storage
        frames = itertools.chain(finished, [partial] if partial is not None else [])
        prov = painting.record(
            engine, params, files, steps_done=steps_done, job_id=job_id, attempt=attempt, frames=painted
        )
        out = Path(folder) / f"out.{clip_format}"
        encode_clip(frames, out, rate=info.fps, format=clip_format, sound_from=clip_path, record=prov)
        poster = partial if not done and partial is not None else _load_frame(storage, job_id, runs, 0)
        run.write_result(Files.poster(attempt), encode_image(poster, "PNG", record=prov))
        result_file = Files.clip(attempt, clip_format)
        run.write_result(result_file, out.read_bytes())
    if stop == StopRequest.FINISH and not run.retried(
        lambda: run.store.running_event(
            job_id, "finished_early", {"frame": painted, "frames": info.frames}, attempt=attempt
        ),
        "finishing early",
    ):
        return run.not_ours("finished early")
    if not run.end(JobStatus.SUCCEEDED, steps_done=steps_done, result_file=result_file):
        return run.not_ours("finished")
    log.info("succeeded%s: %d of %d frames", " (finished early)" if stop else "", painted, info.frames)
    return "succeeded"


def _counted(runs: list[list[int]], attempt: int) -> list[list[int]]:
    """`runs` with one more frame for `attempt`."""
    if runs and runs[-1][0] == attempt:
        return [*runs[:-1], [attempt, runs[-1][1] + 1]]
    return [*runs, [attempt, 1]]


def _frame_names(runs: list[list[int]]) -> list[str]:
    names: list[str] = []
    for attempt, count in runs:
        start = len(names)
        names.extend(Files.frame(attempt, start + i) for i in range(count))
    return names


def _load_frame(storage: Any, job_id: str, runs: list[list[int]], index: int) -> Image.Image:
    from worker import tasks

    data = tasks._input(storage, job_id, _frame_names(runs)[index])
    with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
        return image.convert("RGB")


def _eta_s(
    frame_times: dict[int, float], index: int, frame_fraction: float, frames: int, later_share: float
) -> float | None:
    """Time left from the frames this attempt finished: the later ones', or, while only the clip's first is done,
    its time scaled by `later_share` (a later frame's steps over the first's)."""
    later = [seconds for i, seconds in frame_times.items() if i > 0]
    if later:
        per_frame = sum(later) / len(later)
    elif 0 in frame_times:
        per_frame = frame_times[0] * later_share
    else:
        return None
    return round(per_frame * (frames - index - frame_fraction), 1)
