"""A clip as a job on real workers (the fake SlowEngine: the picture is not the subject here): frames stored as
they finish, the result with its sound, resume after SIGTERM, cancel, finish-now, a lying container."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal

import pytest
import redis
from PIL import Image

from nst_shared import provenance
from nst_shared.jobs import Keys
from nst_shared.video_io import read_record
from tests.clips import make_clip, read_frames, sound_seconds, tone_strength
from tests.conftest import start_stack, wait_until
from tests.engines import STEERED_FACTOR
from tests.service.test_errors import error_of
from tests.service.test_jobs import wait_status

FRAMES = 8
CLIP_FORM = {"max_size": "64", "steps": "3", "frame_steps": "3"}  # 0.1 s a step: about 0.3 s a frame


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    stack = start_stack(
        tmp_path_factory.mktemp("video-jobs"),
        redis_server.url,
        engine="tests.engines:SlowEngine",
        retry_lost_jobs=1,  # a killed worker's clip is queued again once (the sweeper notices within ~3 s)
        heartbeat_interval_s=0.5,
        heartbeat_ttl_s=2,
    )
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=FRAMES, fps=8)


def submit_clip(client, data: bytes, **form: str) -> dict:
    files = [("content", ("clip.mp4", data, "video/mp4")), ("style", ("s.png", _style(), "image/png"))]
    response = client.post("/jobs", files=files, data={**CLIP_FORM, **form})
    assert response.status_code == 202, response.text
    return response.json()


def _style() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 80, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def frames_done(client, job_id: str, at_least: int) -> dict:
    return wait_until(
        lambda: (job := client.get(f"/jobs/{job_id}").json())["video"]["frames_done"] >= at_least and job,
        timeout_s=60,
        interval_s=0.05,
        what=f"{at_least} frames done",
    )


def stored_frames(stack, job_id: str) -> dict[int, list[int]]:
    """Frame index -> the attempts that stored it."""
    painted: dict[int, list[int]] = {}
    for path in (stack.storage_dir / job_id).iterdir():
        if match := re.fullmatch(r"frame-(\d+)-(\d+)\.png", path.name):
            painted.setdefault(int(match[2]), []).append(int(match[1]))
    return painted


def test_clip_job_paints_every_frame_and_keeps_the_sound(stack, clip, tmp_path):
    with stack.client() as client:
        job = submit_clip(client, clip)
        assert job["kind"] == "video"
        done = wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=60)
        assert done["status"] == "succeeded", done["error"]
        assert done["video"]["frames_done"] == FRAMES
        result = client.get(f"/jobs/{job['id']}/result")
        assert result.headers["content-type"] == "video/mp4"
        (tmp_path / "out.mp4").write_bytes(result.content)
        assert len(read_frames(tmp_path / "out.mp4")) == FRAMES
        assert sound_seconds(tmp_path / "out.mp4") == pytest.approx(1.0, abs=0.1)
        assert tone_strength(tmp_path / "out.mp4") > 0.8
        record = read_record(tmp_path / "out.mp4")
        assert record["job"]["id"] == job["id"] and record["frames"] == FRAMES
        poster = client.get(f"/jobs/{job['id']}/result", headers={"Accept": "image/png"})
        assert poster.headers["content-type"] == "image/png"
        assert provenance.read(poster.content)["frames"] == FRAMES
        seek = client.get(f"/jobs/{job['id']}/result", headers={"Range": "bytes=0-99"})
        assert seek.status_code == 206 and len(seek.content) == 100
        events = client.get(f"/jobs/{job['id']}/events", headers={"Accept": "text/event-stream"}).text
        frames = [json.loads(d) for d in re.findall(r"event: frame\ndata: (.*)", events)]
        assert [f["frame"] for f in frames] == list(range(1, FRAMES + 1))
        progress = [json.loads(d) for d in re.findall(r"event: progress\ndata: (.*)", events)]
        assert {p["frames"] for p in progress} == {FRAMES} and progress[-1]["frame"] == FRAMES
        assert all(p["eta_s"] is not None for p in progress if p["frame"] > 1)  # from the frames done
        assert client.get(f"/jobs/{job['id']}/preview").status_code == 200  # the latest finished frame


def test_webm_result(stack, clip, tmp_path):
    with stack.client() as client:
        job = submit_clip(client, clip, video_format="webm", frame_steps="1")
        assert wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=60)["status"] == "succeeded"
        result = client.get(f"/jobs/{job['id']}/result")
        assert result.headers["content-type"] == "video/webm"
        (tmp_path / "out.webm").write_bytes(result.content)
        assert len(read_frames(tmp_path / "out.webm")) == FRAMES
        assert sound_seconds(tmp_path / "out.webm") == pytest.approx(1.0, abs=0.1)


def test_sigterm_mid_clip_goes_on_from_the_last_finished_frame(stack, clip, tmp_path):
    with stack.client() as client:
        job = submit_clip(client, clip)
        frames_done(client, job["id"], 3)
        stack.workers[-1].send_signal(signal.SIGTERM)
        stack.workers[-1].wait(30)
        requeued = client.get(f"/jobs/{job['id']}").json()
        assert requeued["status"] == "queued" and requeued["video"]["frames_done"] >= 3
        stack.start_worker()
        done = wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=60)
        assert done["status"] == "succeeded" and done["attempts"] == 2
        painted = stored_frames(stack, job["id"])
        assert sorted(painted) == list(range(FRAMES))
        assert all(len(attempts) == 1 for attempts in painted.values())  # no frame painted by both attempts
        assert {a for (a,) in painted.values()} == {1, 2}
        (tmp_path / "out.mp4").write_bytes(client.get(f"/jobs/{job['id']}/result").content)
        assert len(read_frames(tmp_path / "out.mp4")) == FRAMES


def test_lost_worker_mid_clip_goes_on_from_the_last_finished_frame(stack, clip):
    with stack.client() as client:
        job = submit_clip(client, clip)
        done_before = frames_done(client, job["id"], 2)["video"]["frames_done"]
        stack.workers[-1].kill()  # no SIGTERM: its heartbeat lapses and the sweeper queues the job again
        stack.workers[-1].wait(30)
        stack.start_worker()
        done = wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=60)
        assert done["status"] == "succeeded" and done["attempts"] == 2, done["error"]
        # Which attempt's files hold which frames, as the record says (a frame stored by the killed worker just
        # before its record was written is never read).
        record = redis.Redis.from_url(stack.redis_url).hgetall(Keys.job(job["id"]))
        runs = json.loads(record[b"clip_frames"])
        assert [attempt for attempt, _ in runs] == [1, 2] and sum(count for _, count in runs) == FRAMES
        assert runs[0][1] >= done_before
        assert float(record[b"clip_style_factor"]) == STEERED_FACTOR  # the first frame's, kept for the resumed frames


def test_cancel_mid_clip_keeps_nothing(stack, clip):
    with stack.client() as client:
        job = submit_clip(client, clip)
        frames_done(client, job["id"], 2)
        assert client.post(f"/jobs/{job['id']}/cancel").status_code == 202
        assert wait_status(client, job["id"], {"canceled", "succeeded"}, timeout_s=30)["status"] == "canceled"
        assert error_of(client.get(f"/jobs/{job['id']}/result"), 409)["code"] == "no_result"


def test_finish_now_encodes_the_frames_done(stack, clip, tmp_path):
    with stack.client() as client:
        job = submit_clip(client, clip)
        done_before = frames_done(client, job["id"], 2)["video"]["frames_done"]
        assert client.post(f"/jobs/{job['id']}/finish").status_code == 202
        done = wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=30)
        assert done["status"] == "succeeded"
        (tmp_path / "out.mp4").write_bytes(client.get(f"/jobs/{job['id']}/result").content)
        frames = len(read_frames(tmp_path / "out.mp4"))
        assert done_before <= frames < FRAMES  # the frames done, and the one in progress as far as it got
        assert sound_seconds(tmp_path / "out.mp4") == pytest.approx(frames / 8, abs=0.1)


def test_lying_container_fails_the_job_and_the_worker_lives(stack, clip, tmp_path):
    longer = make_clip(tmp_path / "longer.mp4", frames=FRAMES + 4, fps=8, sound=False)
    with stack.client() as client:
        stack.workers[-1].send_signal(signal.SIGSTOP)  # the job waits while its stored clip is swapped
        try:
            job = submit_clip(client, clip)
            (stack.storage_dir / job["id"] / "content").write_bytes(longer)  # more frames than probed
        finally:
            stack.workers[-1].send_signal(signal.SIGCONT)
        failed = wait_status(client, job["id"], {"failed", "succeeded"}, timeout_s=60)
        assert failed["status"] == "failed" and failed["error"]["code"] == "video_headers_lied"
        assert stack.workers[-1].poll() is None
        again = submit_clip(client, clip, frame_steps="1")
        assert wait_status(client, again["id"], {"failed", "succeeded"}, timeout_s=60)["status"] == "succeeded"


def test_python_clients_submit_a_clip_and_download_the_video(stack, clip, tmp_path):
    from nst_client import AsyncNstClient, NstClient

    (tmp_path / "clip.mp4").write_bytes(clip)
    frames_seen: set[int] = set()

    def on_event(event) -> None:
        if event.progress is not None:
            frames_seen.add(event.progress.frame)

    with NstClient(stack.url) as nst:
        job = nst.submit(tmp_path / "clip.mp4", _style(), **CLIP_FORM)
        assert job.kind == "video" and job.video["frames"] == FRAMES
        done = nst.wait(job.id, on_event=on_event)
        assert done.status == "succeeded" and done.video["frames_done"] == FRAMES
        assert frames_seen == set(range(1, FRAMES + 1))
        nst.download(job.id, tmp_path / "sync.mp4")
        assert len(read_frames(tmp_path / "sync.mp4")) == FRAMES
        assert provenance.read(nst.result(job.id, format="png"))["frames"] == FRAMES  # the poster

    async def use_async() -> None:
        async with AsyncNstClient(stack.url) as nst:
            job = await nst.submit(clip, _style(), video_format="webm", **CLIP_FORM)
            assert (await nst.wait(job.id)).status == "succeeded"
            (tmp_path / "async.webm").write_bytes(await nst.result(job.id))

    asyncio.run(use_async())
    assert len(read_frames(tmp_path / "async.webm")) == FRAMES
