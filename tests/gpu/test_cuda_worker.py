"""A worker on the GPU: a job that runs out of CUDA memory fails with a code and the same worker runs the next
one; a canceled job stops at its next step."""

from __future__ import annotations

import time

import pytest

from tests.conftest import start_stack
from tests.gpu.engines import CAP_VARIABLE
from tests.service.test_jobs import submit, wait_status

pytestmark = pytest.mark.gpu
CAP_MB = 768  # the model and a 64 px job fit; a 2048 px job's activations (several GB) do not


@pytest.fixture(scope="module")
def stack(device, tmp_path_factory, redis_server):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CAP_VARIABLE, str(CAP_MB))  # read by the worker process's engine
        stack = start_stack(
            tmp_path_factory.mktemp("gpu"),
            redis_server.url,
            device=device,
            max_size_px=2048,
            engine="tests.gpu.engines:MemoryCappedStyleTransfer",
            heartbeat_ttl_s=120,
        )
    yield stack
    stack.stop()


def test_out_of_memory_fails_the_job_and_the_worker_goes_on(stack, on_cuda):
    if not on_cuda:
        pytest.skip("the memory cap is CUDA's (torch.cuda.set_per_process_memory_fraction)")
    with stack.client() as client:
        workers = [engine["name"] for engine in client.get("/readyz").json()["engines"]]
        assert len(workers) == 1
        big = submit(client, max_size="2048", steps="3", scales="1").json()
        failed = wait_status(client, big["id"], {"failed", "succeeded"}, timeout_s=180)
        assert failed["status"] == "failed" and failed["error"]["code"] == "out_of_memory", failed
        small = submit(client, max_size="64", steps="3").json()
        done = wait_status(client, small["id"], {"failed", "succeeded"}, timeout_s=120)
        assert done["status"] == "succeeded", done
        assert done["device"].startswith("cuda")
        assert [engine["name"] for engine in client.get("/readyz").json()["engines"]] == workers  # the same one
        assert client.get(f"/jobs/{small['id']}/result").content.startswith(b"\x89PNG")


def test_cancel_stops_a_running_job_at_its_next_step(stack, on_cuda):
    size = "512" if on_cuda else "64"
    with stack.client() as client:
        job = submit(client, max_size=size, steps="1000", scales="1").json()
        wait_status(client, job["id"], {"running"}, timeout_s=120)
        started = time.monotonic()
        while (client.get(f"/jobs/{job['id']}").json().get("progress") or {}).get("step", 0) < 3:
            assert time.monotonic() - started < 60, "no progress"
            time.sleep(0.05)
        asked = time.monotonic()
        assert client.post(f"/jobs/{job['id']}/cancel").status_code == 202
        final = wait_status(client, job["id"], {"canceled", "succeeded", "failed"}, timeout_s=60)
        stopped_s = time.monotonic() - asked
        assert final["status"] == "canceled" and final["progress"]["step"] < 1000, final
        assert stopped_s < (2 if on_cuda else 10), stopped_s  # a step is milliseconds on a GPU
        print(f"canceled at step {final['progress']['step']} of 1000, {stopped_s:.2f} s after the request")
