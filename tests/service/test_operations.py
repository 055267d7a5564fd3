"""Operations: /metrics follows real jobs through a real worker; JSON logs carry job and request ids."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import start_stack, wait_until
from tests.service.test_jobs import submit, wait_status

LONG = {"steps": "1000", "max_size": "96", "preview_every": "0"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    stack = start_stack(tmp_path_factory.mktemp("ops"), redis_server.url, engine="tests.engines:SlowEngine")
    yield stack
    stack.stop()


def scrape(client: httpx.Client) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_follow_jobs(stack):
    with stack.client() as client:
        before = scrape(client)
        assert value(before, "nst_redis_up") == 1 and value(before, "nst_workers") == 1
        done = submit(client, steps="5", max_size="64").json()
        wait_status(client, done["id"], {"succeeded"})
        after = scrape(client)
        assert value(after, "nst_jobs_submitted_total") == value(before, "nst_jobs_submitted_total") + 1
        for status, added in (("succeeded", 1), ("failed", 0), ("canceled", 0)):
            assert (
                value(after, "nst_jobs_finished_total", status=status)
                == value(before, "nst_jobs_finished_total", status=status) + added
            )
        assert (
            value(after, "nst_job_duration_seconds_count", status="succeeded")
            == value(before, "nst_job_duration_seconds_count", status="succeeded") + 1
        )
        assert value(after, "nst_job_duration_seconds_bucket", status="succeeded", le="+Inf") == value(
            after, "nst_job_duration_seconds_count", status="succeeded"
        )
        assert value(after, "nst_job_queue_wait_seconds_count") == value(before, "nst_job_queue_wait_seconds_count") + 1
        assert (
            value(after, "nst_iteration_seconds_count", device="cpu")
            == value(before, "nst_iteration_seconds_count", device="cpu") + 5
        )
        assert value(after, "nst_iteration_seconds_sum", device="cpu") > value(
            before, "nst_iteration_seconds_sum", device="cpu"
        )
        assert value(after, "nst_seconds_per_iteration", device="cpu") > 0

        # One job running, one waiting: running 1, queue depth 1; then one canceled, one failed.
        running = submit(client, **LONG).json()
        wait_status(client, running["id"], {"running"})
        waiting = submit(client, **LONG).json()
        samples = scrape(client)
        assert value(samples, "nst_jobs_running") == 1 and value(samples, "nst_queue_depth") == 1
        assert value(samples, "nst_jobs_active") == 2
        for name in ("content", "style-0"):  # its images gone: the worker fails it when it comes to it
            (stack.storage_dir / waiting["id"] / name).unlink()
        client.post(f"/jobs/{running['id']}/cancel")
        wait_status(client, running["id"], {"canceled"})
        wait_status(client, waiting["id"], {"failed"})
        end = scrape(client)
        for status in ("canceled", "failed"):
            assert (
                value(end, "nst_jobs_finished_total", status=status)
                == value(after, "nst_jobs_finished_total", status=status) + 1
            )
            assert (
                value(end, "nst_job_duration_seconds_count", status=status)
                == value(after, "nst_job_duration_seconds_count", status=status) + 1
            )
        assert value(end, "nst_jobs_running") == 0 and value(end, "nst_queue_depth") == 0
        assert value(end, "nst_jobs_active") == 0
        assert value(end, "nst_jobs_submitted_total") == value(before, "nst_jobs_submitted_total") + 3


def test_request_id_is_echoed_or_made(stack):
    with stack.client() as client:
        given = client.get("/jobs", headers={"X-Request-ID": "trace-123"})
        made = client.get("/jobs")
        refused = client.get("/jobs", headers={"X-Request-ID": "bad id with spaces"})
    assert given.headers["x-request-id"] == "trace-123"
    assert len(made.headers["x-request-id"]) == 32
    assert refused.headers["x-request-id"] not in ("bad id with spaces", made.headers["x-request-id"])


def json_lines(path) -> list[dict]:
    # Whole lines only: a writer may be in the middle of one.
    lines = [line for line in path.read_text().split("\n")[:-1] if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_logs_are_json_with_job_and_request_ids(stack):
    with stack.client() as client:
        job = submit(client, headers={"X-Request-ID": "submit-req-1"}).json()
        wait_status(client, job["id"], {"succeeded"})
        client.get(f"/jobs/{job['id']}", headers={"X-Request-ID": "poll-req-1"})

    def api_lines():
        return {line.get("request_id"): line for line in json_lines(stack.log_dir / "api.log")}

    lines = wait_until(
        lambda: (found := api_lines()) and "poll-req-1" in found and found, timeout_s=10, what="the API's access line"
    )
    submitted = lines["submit-req-1"]
    assert (submitted["method"], submitted["path"], submitted["status"]) == ("POST", "/jobs", 202)
    assert submitted["job_id"] == job["id"]
    assert (submitted["level"], submitted["logger"]) == ("INFO", "nst.access")
    assert lines["poll-req-1"]["job_id"] == job["id"] and "time" in lines["poll-req-1"]

    def about_job_with_rq() -> list[dict]:
        found = [line for line in json_lines(stack.log_dir / "worker-0.log") if line["job_id"] == job["id"]]
        return found if any(line["logger"].startswith("rq.") for line in found) else []

    # RQ's own lines are JSON with the id too; they come after the job's end is written, which the client saw.
    about_job = wait_until(about_job_with_rq, timeout_s=10, what="RQ's line about the job")
    worker = json_lines(stack.log_dir / "worker-0.log")
    # RQ announces the job it took before our code runs: that one line names it in the message only.
    unmarked = [line for line in worker if job["id"] in line["message"] and line["job_id"] is None]
    assert [line["message"].split(": ", 1)[1] for line in unmarked] == [f"nst: {job['id']}"]
    assert any(line["message"].startswith("succeeded") for line in about_job)


@pytest.mark.parametrize(
    "settings, accepted, refused",
    [
        (
            {"metrics_token": "scrape-me"},
            {"Authorization": "Bearer scrape-me"},
            [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "scrape-mex"}],
        ),
        ({"api_keys": "key-1,key-2"}, {"X-API-Key": "key-2"}, [{}, {"Authorization": "Bearer key-3"}]),
        (
            {"api_keys": "key-1", "metrics_token": "scrape-me"},
            {"Authorization": "Bearer scrape-me"},
            [{}, {"Authorization": "Bearer key-1"}],
        ),  # with a token set, the token alone opens /metrics
    ],
)
def test_metrics_protected_by_token_or_keys(tmp_path, redis_server, settings, accepted, refused):
    stack = start_stack(tmp_path, redis_server.url, workers=0, **settings)
    try:
        with stack.client() as client:
            for headers in refused:
                response = client.get("/metrics", headers=headers)
                assert response.status_code == 401, headers
                assert response.json()["error"]["code"] == "metrics_token_required"
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
            response = client.get("/metrics", headers=accepted)
            assert response.status_code == 200 and "nst_queue_depth" in response.text
            assert client.get("/healthz").status_code == 200  # probes stay open
    finally:
        stack.stop()
