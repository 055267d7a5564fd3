"""The Python client and `nst submit` against the real service (Redis, uvicorn, a worker)."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys

import pytest
from PIL import Image

from nst_client import AsyncNstClient, Conflict, InvalidRequest, JobNotFound, NstClient, TransportError
from tests.conftest import ROOT, free_port, make_image


@pytest.fixture
def images(tmp_path):
    content, style = tmp_path / "content.png", tmp_path / "style.jpg"
    content.write_bytes(make_image(80, 60, seed=1))
    style.write_bytes(make_image(64, 64, seed=2, fmt="JPEG"))
    return content, style


def test_client_leaves_torch_out():
    code = "import sys, nst_client, nst_cli.remote; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_client_submit_wait_download(service_url, images, tmp_path):
    content, style = images
    with NstClient(service_url) as client:
        job = client.submit(content, [style, make_image(50, 70, seed=3)], max_size=64, steps=5,
                            style_blend=(0.7, 0.3), preview_every=2)
        assert job.status == "queued" and job.raw["params"]["style_blend"] == [0.7, 0.3]
        seen = []
        final = client.wait(job.id, timeout_s=120, on_event=seen.append)
        assert final.status == "succeeded" and final.done
        assert [e.data["step"] for e in seen if e.type == "progress"] == [1, 2, 3, 4, 5]
        path = client.download(job.id, tmp_path / "out.png")
        assert Image.open(path).size == (64, 48)
        assert any(j.id == job.id for j in client.list(limit=50))
        assert client.get(job.id).status == "succeeded"


def test_client_events_resume_after_disconnect(service_url, images):
    content, style = images
    with NstClient(service_url) as client:
        job = client.submit(content, style, max_size=64, steps=25)
        first = []
        for event in client.events(job.id):
            first.append(event)
            if event.type == "progress" and event.data["step"] == 4:
                break
        rest = list(client.events(job.id, last_event_id=first[-1].id))
        steps = [e.data["step"] for e in first + rest if e.type == "progress"]
        assert steps == list(range(1, 26))
        assert rest[-1].type == "completed" and rest[-1].data["status"] == "succeeded"


def test_client_typed_errors(service_url, images):
    content, style = images
    with NstClient(service_url) as client:
        with pytest.raises(JobNotFound) as missing:
            client.get("nope")
        assert missing.value.status == 404 and missing.value.code == "job_not_found"
        with pytest.raises(InvalidRequest) as bad:
            client.submit(content, style, steps=0)
        assert bad.value.field == "steps"
        job = client.submit(content, style, max_size=96, steps=1000)
        with pytest.raises(Conflict):
            client.result(job.id)
        assert client.cancel(job.id).status in ("canceled", "running", "queued")
        assert client.wait(job.id, timeout_s=60).status == "canceled"
    with NstClient(f"http://127.0.0.1:{free_port()}") as nowhere:
        with pytest.raises(TransportError):
            nowhere.get("x")


def test_async_client_submit_and_wait(service_url, images):
    content, style = images

    async def go():
        async with AsyncNstClient(service_url) as client:
            job = await client.submit(content, [style], max_size=64, steps=3)
            events = [e async for e in client.events(job.id)]
            final = await client.wait(job.id, timeout_s=60)
            return events, final, await client.result(job.id)

    events, final, png = asyncio.run(go())
    assert events[0].type == "snapshot" and events[-1].type == "completed"
    assert final.status == "succeeded" and Image.open(io.BytesIO(png)).format == "PNG"


def test_nst_submit_wait_output(service_url, images, tmp_path):
    content, style = images
    out = tmp_path / "result.png"
    done = subprocess.run([sys.executable, "-m", "nst_cli.main", "submit", str(content), str(style),
                           "--max_size", "64", "--steps", "4", "--server", service_url, "--output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip().splitlines()[0]
    assert Image.open(out).size == (64, 48)
    status = subprocess.run([sys.executable, "-m", "nst_cli.main", "status", job_id, "--server", service_url],
                            cwd=ROOT, capture_output=True, text=True)
    assert status.returncode == 0 and "succeeded" in status.stdout
    refused = subprocess.run([sys.executable, "-m", "nst_cli.main", "submit", str(content), str(style), "--steps",
                              "5000", "--server", service_url], cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and "--steps" in refused.stderr
    down = subprocess.run([sys.executable, "-m", "nst_cli.main", "jobs", "--server",
                           f"http://127.0.0.1:{free_port()}"], cwd=ROOT, capture_output=True, text=True)
    assert down.returncode == 3 and "Traceback" not in down.stderr
