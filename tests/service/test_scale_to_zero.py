"""Workers scaled to zero (KEDA, deploy/kubernetes): the API stays ready, a job waits in the queue, checked against
the workers' configured memory, and the worker that starts later paints it."""

from __future__ import annotations

from tests.conftest import start_stack
from tests.service.test_errors import error_of
from tests.service.test_jobs import submit, wait_status


def test_no_worker_alive_api_ready_job_waits_for_a_later_worker(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, workers=0, engine="tests.engines:InstantEngine")
    try:
        with stack.client() as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["workers"] == 0 and ready.json()["status"] == "ready"
            job = submit(client, steps="3", max_size="64")
            assert job.status_code == 202
            job_id = job.json()["id"]
            assert client.get(f"/jobs/{job_id}").json()["status"] == "queued"
            stack.start_worker()  # what KEDA does when the queue is no longer empty
            final = wait_status(client, job_id, {"succeeded"}, timeout_s=60)
            assert final["progress"]["step"] == 3
            assert client.get(f"/jobs/{job_id}/result").headers["content-type"] == "image/png"
    finally:
        stack.stop()


def test_no_worker_alive_memory_checked_against_configured_worker_memory(tmp_path, redis_server):
    # NST_WORKER_MEMORY_GB=2: a 4096 px print needs more even in blocks (as with a live 2 GB worker), 1024 px fits.
    stack = start_stack(tmp_path, redis_server.url, workers=0, worker_memory_gb=2, max_size_px=8192)
    try:
        with stack.client() as client:
            error = error_of(submit(client, max_size="4096", steps="30"), 422)
            assert error["code"] == "too_large_for_workers" and error["field"] == "max_size"
            assert "4096x3072" in error["message"] and "2.0 GB" in error["message"]
            assert submit(client, max_size="1024", steps="3").status_code == 202
    finally:
        stack.stop()


def test_no_worker_alive_and_no_configured_memory_accepts_what_it_cannot_check(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, workers=0, max_size_px=8192)
    try:
        with stack.client() as client:
            assert submit(client, max_size="4096", steps="30").status_code == 202
    finally:
        stack.stop()
