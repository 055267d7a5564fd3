"""How a job is delivered and kept: its result's format (chosen at submission or by Accept, provenance in each),
WebP previews, `Prefer: wait`, `cancel_after` deadlines and a per-job `ttl_s`; real API, Redis and a worker
with a fake engine (the picture is not the subject here)."""

from __future__ import annotations

import io
import time

import httpx
import pytest
import redis
from PIL import Image

from nst_shared import provenance
from nst_shared.keys import Keys
from tests.conftest import make_image, start_stack, wait_until

FAST = {"max_size": "64", "steps": "2", "preview_every": "1"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    """SlowEngine: 0.1 s a step, so a job of many steps is still running when a test acts."""
    stack = start_stack(
        tmp_path_factory.mktemp("delivery"), redis_server.url, engine="tests.engines:SlowEngine", result_ttl_s=3600
    )
    yield stack
    stack.stop()


def submit(client: httpx.Client, *, headers: dict | None = None, **form: str) -> httpx.Response:
    files = [
        ("content", ("content.png", make_image(80, 60, seed=1), "image/png")),
        ("style", ("style.png", make_image(64, 64, seed=2), "image/png")),
    ]
    return client.post("/jobs", files=files, data={**FAST, **form}, headers=headers or {})


def wait_ended(client: httpx.Client, job_id: str, timeout_s: float = 60) -> dict:
    def ended():
        job = client.get(f"/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    return wait_until(ended, timeout_s=timeout_s, interval_s=0.1, what=f"job {job_id} to end")


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_result_comes_in_the_submitted_format_or_the_one_accept_names_with_provenance(stack):
    with stack.client() as client:
        job = submit(client, format="webp", quality="70").json()
        assert wait_ended(client, job["id"])["status"] == "succeeded"
        url = f"/jobs/{job['id']}/result"
        answers = {
            None: ("image/webp", "WEBP"),
            "image/*": ("image/webp", "WEBP"),
            "image/jpeg": ("image/jpeg", "JPEG"),
            "image/avif": ("image/avif", "AVIF"),
            "image/png": ("image/png", "PNG"),
            "image/png;q=0.5, image/jpeg": ("image/jpeg", "JPEG"),
            "application/json": ("image/webp", "WEBP"),  # nothing we make: the job's own format, never a 406
        }
        records = []
        for accept, (media, fmt) in answers.items():
            response = client.get(url, headers={"Accept": accept} if accept else {})
            assert response.status_code == 200 and response.headers["content-type"] == media, accept
            assert response.headers["content-disposition"].endswith(f'.{fmt.lower()}"')
            assert opened(response.content).format == fmt and opened(response.content).size == (64, 48)
            records.append(provenance.read(response.content))
        assert records[0] is not None and records[0]["params"]["steps"] == 2
        assert all(record == records[0] for record in records)  # the same provenance in every format
        # The lossy encodings are made once and kept beside the master.
        kept = sorted(p.name for p in (stack.storage_dir / job["id"]).iterdir() if p.name.startswith("result"))
        assert kept == ["result-1-q70.avif", "result-1-q70.jpeg", "result-1-q70.webp", "result-1.png"]


def test_quality_sets_the_lossy_encoding(stack):
    with stack.client() as client:
        low, high = (submit(client, format="jpeg", quality=q).json() for q in ("5", "95"))
        sizes = [len(client.get(f"/jobs/{wait_ended(client, j['id'])['id']}/result").content) for j in (low, high)]
        assert sizes[0] < sizes[1]


@pytest.mark.parametrize(
    ("field", "value"),
    [("format", "gif"), ("quality", "0"), ("quality", "101"), ("cancel_after", "0"), ("ttl_s", "10")],
)
def test_bad_options_are_422_naming_the_field(stack, field, value):
    with stack.client() as client:
        response = submit(client, **{field: value})
    assert response.status_code == 422 and response.json()["error"]["field"] == field


def test_ttl_over_the_services_retention_is_refused(stack):
    with stack.client() as client:
        response = submit(client, ttl_s="3601")
    assert response.status_code == 422 and response.json()["error"]["field"] == "ttl_s"
    assert "3600" in response.json()["error"]["message"]


def test_preview_is_webp_unless_accept_asks_for_png(stack):
    with stack.client() as client:
        job = submit(client).json()
        wait_ended(client, job["id"])
        preview = client.get(f"/jobs/{job['id']}/preview")
        assert preview.headers["content-type"] == "image/webp" and opened(preview.content).format == "WEBP"
        png = client.get(f"/jobs/{job['id']}/preview", headers={"Accept": "image/png"})
        assert png.headers["content-type"] == "image/png" and opened(png.content).format == "PNG"
        # A browser's <img> Accept takes the WebP as it is.
        browser = client.get(
            f"/jobs/{job['id']}/preview", headers={"Accept": "image/avif,image/webp,image/*,*/*;q=0.8"}
        )
        assert browser.headers["content-type"] == "image/webp"


def test_prefer_wait_answers_the_finished_job(stack):
    with stack.client() as client:
        response = submit(client, headers={"Prefer": "wait=30"})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "succeeded" and response.headers["Preference-Applied"] == "wait=30"
        assert response.headers["Location"] == f"/jobs/{response.json()['id']}"
        assert client.get(f"/jobs/{response.json()['id']}/result").status_code == 200


def test_prefer_wait_answers_202_when_the_job_outlasts_it(stack):
    with stack.client() as client:
        started = time.monotonic()
        response = submit(client, headers={"Prefer": "respond-async, wait=1"}, steps="300")
        elapsed = time.monotonic() - started
        job = response.json()
        assert response.status_code == 202 and job["status"] in ("queued", "running")
        assert response.headers["Preference-Applied"] == "wait=1" and "Retry-After" in response.headers
        assert 1 <= elapsed < 20
        client.post(f"/jobs/{job['id']}/cancel")
        wait_ended(client, job["id"])


def test_prefer_without_wait_or_malformed_answers_at_once(stack):
    with stack.client() as client:
        for prefer in ("respond-async", "wait=soon", "wait=-3"):
            response = submit(client, headers={"Prefer": prefer}, steps="300")
            assert response.status_code == 202 and "Preference-Applied" not in response.headers, prefer
            client.post(f"/jobs/{response.json()['id']}/cancel")
            wait_ended(client, response.json()["id"])


def test_running_job_past_its_deadline_is_canceled_deadline_exceeded(stack):
    with stack.client() as client:
        job = submit(client, steps="300", cancel_after="1.5").json()
        ended = wait_ended(client, job["id"], timeout_s=30)
        assert ended["status"] == "canceled" and ended["error"]["code"] == "deadline_exceeded"
        assert ended["started_at"] is not None and 0 < ended["steps_done"] < 300


def test_job_that_never_started_is_canceled_without_a_worker(stack):
    with stack.client() as client:
        blocker = submit(client, steps="600").json()  # holds the one worker for a minute
        wait_until(lambda: client.get(f"/jobs/{blocker['id']}").json()["status"] == "running", timeout_s=30)
        waiting = submit(client, cancel_after="1").json()
        ended = wait_ended(client, waiting["id"], timeout_s=30)
        assert ended["status"] == "canceled" and ended["error"]["code"] == "deadline_not_started"
        assert ended["started_at"] is None and ended["attempts"] == 0 and ended["device"] is None
        connection = redis.Redis.from_url(stack.redis_url)
        assert waiting["id"].encode() not in connection.lrange("rq:queue:nst", 0, -1)  # gone from the queue too
        assert connection.zscore(Keys.deadlines, waiting["id"]) is None
        assert client.get(f"/jobs/{blocker['id']}").json()["status"] == "running"  # the worker never left it
        client.post(f"/jobs/{blocker['id']}/cancel")
        wait_ended(client, blocker["id"])


def test_ttl_s_keeps_a_finished_job_only_that_long(stack):
    connection = redis.Redis.from_url(stack.redis_url)
    with stack.client() as client:
        short, default = (submit(client, **ttl).json() for ttl in ({"ttl_s": "60"}, {}))
        for job in (short, default):
            wait_ended(client, job["id"])
    assert 0 < connection.ttl(Keys.job(short["id"])) <= 60 and 0 < connection.ttl(Keys.events(short["id"])) <= 60
    assert 60 < connection.ttl(Keys.job(default["id"])) <= 3600


def test_prefer_wait_takes_a_place_among_open_streams_or_answers_at_once(tmp_path, redis_server):
    """A wait holds a Redis connection as an event stream does: with the caller's one place taken by a stream,
    the job is answered at once (queued all the same), not refused."""
    stack = start_stack(tmp_path, redis_server.url, engine="tests.engines:SlowEngine", max_streams_per_key=1)
    try:
        with stack.client() as client:
            long = submit(client, steps="600").json()
            with client.stream("GET", f"/jobs/{long['id']}/events") as stream:
                assert stream.status_code == 200
                started = time.monotonic()
                response = submit(client, headers={"Prefer": "wait=30"})
                assert time.monotonic() - started < 15
                assert response.status_code == 202 and "Preference-Applied" not in response.headers
                assert response.json()["status"] == "queued"
            # The stream closed: its place is free again, and the wait is made.
            client.post(f"/jobs/{long['id']}/cancel")
            waited = submit(client, headers={"Prefer": "wait=30"})
            assert waited.status_code == 200 and waited.headers["Preference-Applied"] == "wait=30"
    finally:
        stack.stop()
