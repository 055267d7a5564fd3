"""Finish now (POST /jobs/{id}/finish) and the record inside each result, through real workers: a fake engine
where the API is the subject, the real one where the picture must come out at the full size."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from PIL import Image

from nst_shared import provenance
from service.auth import owner_of
from tests.conftest import Stack, make_image, start_stack, wait_until
from tests.service.sse import read_events
from tests.service.test_jobs import submit, wait_status

ALPHA, BETA = "alpha-key-0123456789", "beta-key-9876543210"
HOOK = "http://127.0.0.1:9/hook-never-in-the-picture"


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory, redis_server) -> Iterator[Stack]:
    stack = start_stack(
        tmp_path_factory.mktemp("finish"),
        redis_server.url,
        engine="tests.engines:SlowEngine",
        api_keys=f'["{ALPHA}", "{BETA}"]',
        webhook_secret="s3cret-for-tests",
        webhook_allow='["127.0.0.1/32"]',
    )
    yield stack
    stack.stop()


def _key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _running(client, job_id: str, key: str, *, step: int = 3) -> None:
    wait_until(
        lambda: (client.get(f"/jobs/{job_id}", headers=_key(key)).json().get("progress") or {}).get("step", 0) >= step,
        timeout_s=60,
        what=f"job {job_id} past step {step}",
    )


def test_finish_running_job_succeeds_with_the_picture_so_far(slow_stack):
    with slow_stack.client() as client:
        job = submit(
            client, headers=_key(ALPHA), steps="300", max_size="96", preview_every="0", webhook_url=HOOK
        ).json()
        _running(client, job["id"], ALPHA)
        assert client.post(f"/jobs/{job['id']}/finish", headers=_key(BETA)).status_code == 404  # not BETA's
        answer = client.post(f"/jobs/{job['id']}/finish", headers=_key(ALPHA))
        assert answer.status_code == 202 and answer.json()["links"]["finish"] == f"/jobs/{job['id']}/finish"
        with client.stream("GET", f"/jobs/{job['id']}/events", headers=_key(ALPHA)) as stream:
            events = list(read_events(stream))
        final = events[-1][2]
        assert final["status"] == "succeeded" and 3 <= final["steps_done"] < 300
        [early] = [data for _, kind, data in events if kind == "finished_early"]
        assert early == {"step": final["steps_done"], "steps": 300}
        result = client.get(f"/jobs/{job['id']}/result", headers=_key(ALPHA))
        assert Image.open(io.BytesIO(result.content)).size == (96, 72)
        record = provenance.read(result.content)
        assert record is not None and record["steps_done"] == final["steps_done"]
        assert record["params"] == final["params"] and record["params"]["steps"] == 300


def test_result_records_the_drawn_seed_and_input_hashes_but_no_owner_or_webhook(slow_stack):
    content = make_image(80, 60, seed=3)
    with slow_stack.client() as client:
        job = submit(client, headers=_key(ALPHA), content=content, steps="2", webhook_url=HOOK).json()
        assert job["params"].get("seed") is None
        final = wait_until(
            lambda: (j := client.get(f"/jobs/{job['id']}", headers=_key(ALPHA)).json())["status"] == "succeeded" and j,
            timeout_s=60,
            what="the job",
        )
        data = client.get(f"/jobs/{job['id']}/result", headers=_key(ALPHA)).content
    record = provenance.read(data)
    assert record is not None
    assert set(record) == {"engine", "params", "seed", "steps_done", "device", "precision", "sha256", "job"}
    assert record["job"] == {"id": job["id"], "attempt": 1}  # the attempt that painted it
    assert 0 <= record["seed"] <= 2**31 - 1 and record["params"]["seed"] == record["seed"] == final["params"]["seed"]
    assert final["steps_done"] == record["steps_done"] == 2
    assert record["device"] == final["device"] and record["precision"] == final["precision"]
    assert record["sha256"]["content"] == provenance.sha256(content) and record["sha256"]["masks"] == []
    chunk = Image.open(io.BytesIO(data)).text["nst"]
    for secret in (HOOK, "hook", "owner", ALPHA, owner_of(ALPHA)):
        assert secret not in chunk
    assert json.loads(chunk) == record


def test_finish_refuses_queued_and_finished_jobs(slow_stack):
    with slow_stack.client() as client:
        busy = submit(client, headers=_key(ALPHA), steps="300", preview_every="0").json()
        _running(client, busy["id"], ALPHA, step=1)
        queued = submit(client, headers=_key(ALPHA), steps="2").json()  # the one worker is busy
        refused = client.post(f"/jobs/{queued['id']}/finish", headers=_key(ALPHA))
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "job_not_started"
        assert client.post(f"/jobs/{busy['id']}/cancel", headers=_key(ALPHA)).status_code == 202
        wait_until(
            lambda: client.get(f"/jobs/{queued['id']}", headers=_key(ALPHA)).json()["status"] == "succeeded",
            timeout_s=60,
            what="the queued job to run",
        )
        done = client.post(f"/jobs/{queued['id']}/finish", headers=_key(ALPHA))
        assert done.status_code == 409 and done.json()["error"]["code"] == "job_finished"
        unknown = client.post(f"/jobs/{'0' * 32}/finish", headers=_key(ALPHA))
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "job_not_found"


def test_finish_on_a_coarse_scale_gives_the_full_size_picture(painting_service):
    # The real engine: two scales (64 px, then 96 px); finished while still on the first.
    with painting_service.client() as client:
        job = submit(client, steps="1000", max_size="96", scales="2", min_scale_size="64", preview_every="0").json()
        wait_until(
            lambda: (client.get(f"/jobs/{job['id']}").json().get("progress") or {}).get("step", 0) >= 2,
            timeout_s=60,
            what="two steps",
        )
        assert client.get(f"/jobs/{job['id']}").json()["progress"]["scale"] == 1
        assert client.post(f"/jobs/{job['id']}/finish").status_code == 202
        final = wait_status(client, job["id"], {"succeeded"}, timeout_s=60)
        assert final["steps_done"] < 500 and final["progress"]["scale"] == 1
        result = client.get(f"/jobs/{job['id']}/result").content
        assert Image.open(io.BytesIO(result)).size == (96, 72)
        assert provenance.read(result)["steps_done"] == final["steps_done"]
