"""nst_client against the real service (Redis, the API under uvicorn, a real worker, tiny images)."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from nst_client import (
    AsyncNstClient,
    Conflict,
    InvalidRequest,
    JobNotFound,
    JobStatus,
    NstClient,
    TransportError,
    WaitTimeout,
)
from nst_shared import provenance
from tests.conftest import ROOT, free_port, make_image

LONG = {"max_size": 96, "steps": 1000}  # a job that runs until it is canceled


@pytest.fixture
def images(tmp_path):
    content, style = tmp_path / "content.png", tmp_path / "style.jpg"
    content.write_bytes(make_image(80, 60, seed=1))
    style.write_bytes(make_image(64, 64, seed=2, fmt="JPEG"))
    return content, style


class _CutStream(httpx.SyncByteStream):
    """The body of an event stream that breaks (as a dropped connection does) after `progress_events`."""

    def __init__(self, inner: httpx.SyncByteStream, progress_events: int) -> None:
        self.inner, self.limit = inner, progress_events

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self.inner:
            yield chunk
            seen += chunk.count(b"event: progress")
            if seen >= self.limit:
                raise httpx.ReadError("connection cut by the test")

    def close(self) -> None:
        self.inner.close()


class CutFirstEventStream(httpx.BaseTransport):
    """A real HTTP transport whose first `/events` response breaks mid-stream; records Last-Event-ID."""

    def __init__(self, progress_events: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.progress_events = progress_events
        self.last_event_ids: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not request.url.path.endswith("/events"):
            return response
        self.last_event_ids.append(request.headers.get("last-event-id"))
        if len(self.last_event_ids) > 1:
            return response
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            request=request,
            stream=_CutStream(response.stream, self.progress_events),
        )  # type: ignore[arg-type]

    def close(self) -> None:
        self.inner.close()


def test_import_client_leaves_torch_out():
    code = (
        "import sys, nst_client, nst_client.webhooks, nst_cli.main; nst_cli.main.build_parser(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_submit_paths_files_and_bytes_then_wait_and_download(service_url, images, tmp_path):
    content, style = images
    with NstClient(service_url) as client, open(style, "rb") as style_file:
        job = client.submit(
            content,
            [style_file, make_image(50, 70, seed=3)],
            max_size=64,
            steps=5,
            style_blend=(0.7, 0.3),
            preview_every=2,
        )
        assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING) and not job.done  # an idle worker is quick
        assert job.params["style_blend"] == [0.7, 0.3] and job.styles == 2
        seen = []
        final = client.wait(job.id, timeout_s=120, on_event=seen.append)
        assert final.status == "succeeded" and final.done and final.finished_at is not None
        assert final.device == "cpu" and final.precision in ("fp32", "bf16")
        assert seen[0].type == "snapshot" and seen[-1].type == "completed"
        assert [e.progress.step for e in seen if e.progress] == [1, 2, 3, 4, 5]
        assert all(set(e.progress.losses) >= {"content", "style"} for e in seen if e.progress)
        path = client.download(job.id, tmp_path / "out.png")
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (64, 48)
        with Image.open(io.BytesIO(client.preview(job.id))) as preview:
            assert preview.format == "WEBP"  # smaller files for pages (issue 32)
        assert client.get(job.id).status == "succeeded"
        page = client.list_jobs(limit=100)
        assert job.id in [j.id for j in page.items] and page.total >= 1


def test_events_reconnect_resumes_with_last_event_id(service_url, images):
    content, style = images
    transport = CutFirstEventStream(progress_events=3)
    with NstClient(service_url, transport=transport) as client:
        job = client.submit(content, style, max_size=64, steps=12)
        events = list(client.events(job.id, timeout_s=120))
    assert len(transport.last_event_ids) == 2, "the iterator should have reconnected once"
    first, resumed_from = transport.last_event_ids
    assert first is None and resumed_from is not None
    ids = [e.id for e in events if e.id]
    assert resumed_from in ids and len(ids) == len(set(ids)), "no event twice"
    assert [e.progress.step for e in events if e.progress] == list(range(1, 13)), "no step lost or repeated"
    assert [e.type for e in events].count("snapshot") == 2  # the service sends one per connection
    assert events[-1].type == "completed" and events[-1].job.status == "succeeded"


def test_events_resume_from_an_earlier_iteration(service_url, images):
    content, style = images
    with NstClient(service_url) as client:
        job = client.submit(content, style, max_size=64, steps=8)
        first = []
        for event in client.events(job.id):
            first.append(event)
            if event.progress and event.progress.step == 3:
                break
        rest = list(client.events(job.id, last_event_id=first[-1].id))
    steps = [e.progress.step for e in first + rest if e.progress]
    assert steps == list(range(1, 9))


def test_finish_keeps_the_picture_so_far(service_url, images):
    content, style = images
    with NstClient(service_url) as client:
        job = client.submit(content, style, **LONG)
        for event in client.events(job.id):
            if event.progress and event.progress.step >= 2:
                break
        assert client.finish(job.id).status == "running"
        final = client.wait(job.id, timeout_s=60)
        assert final.status == "succeeded" and final.steps_done is not None and 2 <= final.steps_done < 1000
        assert Image.open(io.BytesIO(client.result(job.id))).size == (96, 72)
        with pytest.raises(Conflict):
            client.finish(job.id)

    async def finish_again() -> None:
        async with AsyncNstClient(service_url) as nst:
            await nst.finish(job.id)

    with pytest.raises(Conflict):
        asyncio.run(finish_again())


def test_wait_timeout_then_cancel(service_url, images):
    content, style = images
    with NstClient(service_url) as client:
        job = client.submit(content, style, **LONG)
        started = time.monotonic()
        with pytest.raises(WaitTimeout) as timeout:
            client.wait(job.id, timeout_s=2)
        assert timeout.value.job_id == job.id and time.monotonic() - started < 10
        assert client.cancel(job.id).status in ("canceled", "running")
        final = client.wait(job.id, timeout_s=60)
        assert final.status == "canceled" and final.done
        with pytest.raises(Conflict) as finished:
            client.cancel(job.id)
        assert finished.value.status == 409 and finished.value.code == "job_finished"
        with pytest.raises(Conflict) as no_result:
            client.result(job.id)
        assert no_result.value.code == "no_result"


def test_api_errors_raise_typed_exceptions(service_url, images):
    content, style = images
    with NstClient(service_url) as client:
        with pytest.raises(JobNotFound) as missing:
            client.get("no-such-job")
        assert missing.value.status == 404 and missing.value.code == "job_not_found" and missing.value.message
        with pytest.raises(InvalidRequest) as bad:
            client.submit(content, style, steps=0)
        assert bad.value.status == 422 and bad.value.field == "steps"
        with pytest.raises(InvalidRequest) as unknown:
            client.submit(content, style, stepz=3)
        assert unknown.value.code == "unknown_parameter" and unknown.value.field == "stepz"
        with pytest.raises(InvalidRequest) as not_image:
            client.submit(b"not an image at all", style)
        assert not_image.value.status in (415, 422) and not_image.value.field == "content"
        with pytest.raises(JobNotFound):
            list(client.events("no-such-job"))
        job = client.submit(content, style, **LONG)
        with pytest.raises(Conflict) as not_ready:
            client.result(job.id)
        assert not_ready.value.code == "result_not_ready"
        client.delete(job.id)
        with pytest.raises(JobNotFound):
            client.get(job.id)
    with NstClient(f"http://127.0.0.1:{free_port()}") as nowhere, pytest.raises(TransportError):
        nowhere.get("x")


def test_async_client_submit_events_wait_result(service_url, images):
    content, style = images

    async def scenario():
        async with AsyncNstClient(service_url) as client:
            job = await client.submit(content, [style], max_size=64, steps=3)
            events = [e async for e in client.events(job.id, timeout_s=120)]
            final = await client.wait(job.id, timeout_s=30)  # finished: the stream replays the end at once
            png = await client.result(job.id)
            page = await client.list_jobs(limit=100)
            with pytest.raises(Conflict):
                await client.cancel(job.id)
            return job, events, final, png, page

    job, events, final, png, page = asyncio.run(scenario())
    assert events[0].type == "snapshot" and events[-1].type == "completed"
    assert [e.progress.step for e in events if e.progress] == [1, 2, 3]
    assert final.status == "succeeded" and job.id in [j.id for j in page.items]
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (64, 48)


def test_submit_waits_and_downloads_in_another_format(service_url, images, tmp_path):
    content, style = images
    with NstClient(service_url) as client:
        job = client.submit(content, [style], max_size=64, steps=2, format="webp", quality=80, wait_s=60)
        assert job.status == "succeeded"  # one call: the answer waited for the end
        with Image.open(io.BytesIO(client.result(job.id))) as image:
            assert image.format == "WEBP"
        saved = client.download(job.id, tmp_path / "out.jpg", format="jpeg")
        with Image.open(saved) as image:
            assert image.format == "JPEG" and image.size == (64, 48)
        assert provenance.read_file(saved)["params"]["steps"] == 2


def test_sweep_submit_wait_sheet_and_delete(service_url, images):
    content, style = images
    with NstClient(service_url) as client:
        sweep = client.submit_sweep(content, [style], {"style_weight": [5, 45]}, max_size=64, steps=2)
        assert [c.values for c in sweep.cells] == [{"style_weight": "5"}, {"style_weight": "45"}]
        seen = []
        final = client.wait_sweep(sweep.id, timeout_s=120, poll_s=0.2, on_update=seen.append)
        assert final.done and final.progress["succeeded"] == 2 and seen[-1] == final
        assert [client.get(c.job_id).params["style_weight"] for c in final.cells] == [5.0, 45.0]
        sheet = client.sweep_sheet(sweep.id)
        assert provenance.read(sheet)["sweep"]["id"] == sweep.id
        client.delete_sweep(sweep.id)
        with pytest.raises(JobNotFound):
            client.get_sweep(sweep.id)


def test_async_client_sweeps_submit_wait_sheet_cancel_and_delete(service_url, images):
    content, style = images

    async def scenario():
        async with AsyncNstClient(service_url) as client:
            small = {"max_size": 64, "steps": 2}
            waited = await client.submit_sweep(content, [style], {"style_weight": [5, 45]}, wait_s=60, **small)
            seen = []
            final = await client.wait_sweep(waited.id, timeout_s=120, poll_s=0.2, on_update=seen.append)
            sheet = await client.sweep_sheet(waited.id, format="webp")
            long = await client.submit_sweep(content, [style], {"style_weight": [5, 45]}, **LONG)
            with pytest.raises(WaitTimeout):
                await client.wait_sweep(long.id, timeout_s=0.5, poll_s=0.2)
            canceled = await client.cancel_sweep(long.id)
            ended = await client.wait_sweep(long.id, timeout_s=60, poll_s=0.2)
            for sweep in (waited, long):
                await client.delete_sweep(sweep.id)
            with pytest.raises(JobNotFound):
                await client.get_sweep(waited.id)
            return waited, seen, final, sheet, canceled, ended

    waited, seen, final, sheet, canceled, ended = asyncio.run(scenario())
    assert waited.done and waited.progress["succeeded"] == 2  # one call: the answer waited for every cell
    assert final.done and seen == [final] and [c.values["style_weight"] for c in final.cells] == ["5", "45"]
    assert provenance.read(sheet)["sweep"]["id"] == waited.id
    with Image.open(io.BytesIO(sheet)) as image:
        assert image.format == "WEBP"
    assert [c.status for c in ended.cells] == [JobStatus.CANCELED] * 2 and canceled.id == ended.id


def test_submit_params_model_sends_only_what_it_sets(service, images):
    import redis

    from nst_shared.jobs import JobStore
    from nst_shared.params import TransferParams

    content, style = images
    with NstClient(service.url) as client:
        job = client.submit(content, style, params=TransferParams(max_size=64, steps=2, seed=5))
        assert (job.params["max_size"], job.params["steps"], job.params["seed"]) == (64, 2, 5)
        # The rest were left to the service, so a GPU worker's defaults may replace them.
        record = JobStore(redis.Redis.from_url(service.redis_url), ttl_s=60).get(job.id)
        assert record.extra["explicit"] == ["max_size", "seed", "steps"]
        assert client.wait(job.id, timeout_s=120).status == "succeeded"


def test_submit_style_masks_and_color_mode(service, images, tmp_path):
    from nst_shared.params import TransferParams

    content, style = images
    mask = tmp_path / "mask.png"
    mask.write_bytes(make_image(80, 60, seed=9))
    with NstClient(service.url) as client:
        job = client.submit(content, [style], style_masks=[mask], max_size=64, steps=2, color_mode="match")
        assert job.params["color_mode"] == "match"
        assert (service.storage_dir / job.id / "style-mask-0").read_bytes() == mask.read_bytes()
        # The older name, given in a parameter model, arrives as the colour mode it stands for.
        aliased = client.submit(content, style, params=TransferParams(max_size=64, steps=2, preserve_colors=True))
        assert aliased.params["color_mode"] == "luminance"
        with pytest.raises(InvalidRequest) as refused:
            client.submit(content, style, style_masks=[mask, mask], max_size=64, steps=2)
        assert refused.value.field == "style_mask"
        assert client.wait(job.id, timeout_s=120).status == "succeeded"


def test_submit_with_a_look_sends_the_look_and_what_it_overrides(service, images):
    import redis

    from nst_shared.jobs import JobStore
    from nst_shared.looks import LOOKS
    from nst_shared.params import TransferParams

    content, style = images
    with NstClient(service.url) as client:
        job = client.submit(
            content, style, params=TransferParams(look="painterly", max_size=64, steps=2, style_weight=9)
        )
        assert (job.params["look"], job.params["style_weight"]) == ("painterly", 9)
        assert job.params["style_layer_weights"] == list(LOOKS["painterly"]["style_layer_weights"])
        record = JobStore(redis.Redis.from_url(service.redis_url), ttl_s=60).get(job.id)
        assert record.extra["explicit"] == ["look", "max_size", "steps", "style_weight"]
        by_field = client.submit(content, style, look="subtle", max_size=64, steps=2)
        assert by_field.params["style_weight"] == LOOKS["subtle"]["style_weight"]
        assert client.wait(job.id, timeout_s=120).status == "succeeded"
