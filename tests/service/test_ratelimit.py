"""Rate limits: per key (or client IP), counted in Redis across API processes, 429 with Retry-After."""

from __future__ import annotations

import subprocess

import httpx

from nst_cli.up import api_command
from tests.conftest import ROOT, answers_ok, free_port, start_stack, wait_until
from tests.service.test_errors import error_of
from tests.service.test_jobs import submit


def test_requests_over_limit_429_across_api_processes(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, workers=0, rate_limit_requests_per_min=6)
    port = free_port()
    second = subprocess.Popen(
        api_command("127.0.0.1", port), env=stack.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: answers_ok(f"http://127.0.0.1:{port}/healthz"), timeout_s=30, what="second API")
        with stack.client() as one, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as two:
            answers = [client.get("/jobs").status_code for client in (one, two, one, two, one, two)]
            assert answers == [200] * 6
            refused = two.get("/jobs/some-id")
            error = error_of(refused, 429)
            assert error["code"] == "rate_limited" and "per minute" in error["message"]
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            assert one.get("/jobs").status_code == 429
            assert one.get("/healthz").status_code == 200  # probes and the page are not limited
            assert one.get("/").status_code == 200
    finally:
        second.terminate()
        second.wait(20)
        stack.stop()


def test_submissions_over_limit_429_per_key(tmp_path, redis_server):
    stack = start_stack(
        tmp_path, redis_server.url, workers=0, rate_limit_submissions_per_min=2, api_keys="key-one,key-two"
    )
    try:
        with stack.client() as client:
            one, two = {"X-API-Key": "key-one"}, {"X-API-Key": "key-two"}
            assert [submit(client, headers=one).status_code for _ in range(2)] == [202, 202]
            refused = submit(client, headers=one)
            assert error_of(refused, 429)["code"] == "rate_limited" and "Retry-After" in refused.headers
            assert submit(client, headers=two).status_code == 202  # another key has its own allowance
            assert client.get("/jobs", headers=one).status_code == 200  # reading is a separate limit
    finally:
        stack.stop()
