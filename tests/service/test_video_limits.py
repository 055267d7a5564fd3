"""A clip at submission: its limits checked from its headers, each refusal a 422 naming the limit; nothing kept."""

from __future__ import annotations

import pytest

from tests.clips import make_clip, make_gif
from tests.conftest import start_stack
from tests.service.test_errors import error_of
from tests.service.test_jobs import submit


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    """No worker: what is accepted stays queued, so only the submission is looked at."""
    stack = start_stack(
        tmp_path_factory.mktemp("video-limits"),
        redis_server.url,
        workers=0,
        max_video_frames=10,
        max_video_duration_s=2,
        max_video_frame_pixels=64 * 48,
        max_video_step_megapixels=5,
    )
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {
        "ok": make_clip(folder / "ok.mp4", frames=8, fps=8),
        "many": make_clip(folder / "many.mp4", frames=12, fps=24, sound=False),
        "long": make_clip(folder / "long.webm", frames=6, fps=2, sound=False),
        "wide": make_clip(folder / "wide.mp4", frames=4, width=96, height=48, sound=False),
        "gif": make_gif(folder / "a.gif", frames=4),
    }


@pytest.mark.parametrize(
    "clip, form, code, field",
    [
        ("many", {}, "video_too_many_frames", "content"),
        ("long", {}, "video_too_long", "content"),
        ("wide", {}, "video_frame_too_large", "content"),
        ("ok", {"frame_steps": "2000"}, "video_over_budget", "frame_steps"),
    ],
)
def test_submit_clip_over_a_limit_422_naming_it(stack, clips, clip, form, code, field):
    with stack.client() as client:
        error = error_of(submit(client, content=clips[clip], **form), 422)
        assert error["code"] == code and error["field"] == field
        assert client.get("/jobs").json()["total"] == 0  # nothing kept


def test_submit_lying_or_broken_clip_422(stack):
    with stack.client() as client:
        error = error_of(submit(client, content=b"\x00\x00\x00\x18ftypisom" + bytes(500)), 422)
        assert error["code"] == "unreadable_video" and error["field"] == "content"


def test_submit_clip_makes_a_video_job(stack, clips):
    with stack.client() as client:
        for clip, frames, audio in (("ok", 8, True), ("gif", 4, False)):
            response = submit(client, content=clips[clip], video_format="webm")
            assert response.status_code == 202, response.text
            job = response.json()
            assert job["kind"] == "video"
            assert job["video"]["frames"] == frames and job["video"]["frames_done"] == 0
            assert job["video"]["audio"] is audio and job["video"]["format"] == "webm"
        picture = submit(client).json()
        assert picture["kind"] == "picture" and picture["video"] is None
