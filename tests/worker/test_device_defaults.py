"""A GPU worker's own defaults (512 px, 300 steps) never take a job past the deployment's caps."""

from __future__ import annotations

import io

import httpx
from PIL import Image

from nst_shared.device_defaults import for_device_within_caps
from nst_shared.params import TransferParams
from nst_shared.settings import Settings
from tests.conftest import make_image, start_stack
from tests.service.test_jobs import wait_status

CONTENT_SIZE = (600, 400)


def submit_defaults(client: httpx.Client) -> dict:
    """A job that leaves max_size and steps to the service."""
    files = [
        ("content", ("content.png", make_image(*CONTENT_SIZE, seed=1), "image/png")),
        ("style", ("style.png", make_image(64, 64, seed=2), "image/png")),
    ]
    response = client.post("/jobs", files=files, data={"preview_every": "0"})
    assert response.status_code == 202, response.text
    return response.json()


def run_default_job(tmp_path, redis_url: str, **settings: object) -> tuple[dict, tuple[int, int]]:
    stack = start_stack(tmp_path, redis_url, engine="tests.engines:CudaDefaultsEngine", **settings)
    try:
        with stack.client() as client:
            job = submit_defaults(client)
            final = wait_status(client, job["id"], {"succeeded", "failed"})
            assert final["status"] == "succeeded", final
            result = client.get(f"/jobs/{job['id']}/result")
            return final, Image.open(io.BytesIO(result.content)).size
    finally:
        stack.stop()


def test_gpu_defaults_are_lowered_to_the_deployments_caps(tmp_path, redis_server):
    final, size = run_default_job(tmp_path, redis_server.url, max_size_px=384, max_steps=200)
    assert (final["params"]["max_size"], final["params"]["steps"]) == (384, 200)  # not 512 and 300
    assert max(size) == 384
    assert final["progress"]["step"] == 200


def test_gpu_defaults_over_the_step_budget_run_as_the_api_checked_them(tmp_path, redis_server):
    # 120 steps at 384 px (the defaults the API checked) fit this budget; 300 steps at 512 px do not.
    final, size = run_default_job(tmp_path, redis_server.url, max_step_megapixels=20)
    assert (final["params"]["max_size"], final["params"]["steps"]) == (384, 120)
    assert max(size) == 384


def test_gpu_defaults_apply_within_the_caps():
    params = TransferParams()
    applied = for_device_within_caps(
        params,
        "cuda",
        explicit=frozenset(),
        settings=Settings(),
        content_size=CONTENT_SIZE,
        precision="bf16",
        budget_bytes=16 * 2**30,
    )
    assert (applied.max_size, applied.steps) == (512, 300)
    explicit = TransferParams(steps=50)
    kept = for_device_within_caps(
        explicit,
        "cuda",
        explicit=explicit.model_fields_set,
        settings=Settings(max_size_px=400),
        content_size=CONTENT_SIZE,
        precision="bf16",
        budget_bytes=16 * 2**30,
    )
    assert (kept.max_size, kept.steps) == (400, 50)


def test_gpu_defaults_that_overflow_the_workers_memory_are_not_applied():
    params = TransferParams()
    applied = for_device_within_caps(
        params,
        "cuda",
        explicit=frozenset(),
        settings=Settings(),
        content_size=CONTENT_SIZE,
        precision="fp32",
        budget_bytes=1,
    )
    assert applied == params
