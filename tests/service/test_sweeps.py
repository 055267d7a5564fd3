"""Sweeps end to end: a grid of cells, each a job on the queue, followed, cancelled, deleted and sheeted; how a
sweep counts against the queue's room, the submission rate and an Idempotency-Key. Real API, Redis and workers
with a fake engine (the pictures are the content resized: the grid, not the painting, is the subject)."""

from __future__ import annotations

import io
import time

import httpx
import pytest
import redis
from PIL import Image
from rq import Queue
from rq.serializers import JSONSerializer

from nst_shared import provenance
from nst_shared.jobs import JobStore, Keys
from nst_shared.params import TransferParams
from nst_shared.settings import Settings
from nst_shared.storage import LocalStorage
from nst_shared.sweeps import SweepStore, new_sweep, parse_axes, sweep_key
from service.submission import Submissions
from service.sweep_submission import SweepSubmissions, _sweep_digest
from tests.conftest import make_image, next_database_url, start_stack, wait_until

FAST = {"max_size": "64", "steps": "2"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    stack = start_stack(
        tmp_path_factory.mktemp("sweeps"), redis_server.url, workers=2, engine="tests.engines:SlowEngine"
    )
    yield stack
    stack.stop()


STYLES = [make_image(64, 64, seed=2), make_image(72, 64, seed=3)]


def files(styles: int = 1) -> list:
    return [
        ("content", ("content.png", make_image(80, 60, seed=1), "image/png")),
        *(("style", (f"style{i}.png", STYLES[i], "image/png")) for i in range(styles)),
    ]


def post_sweep(
    client: httpx.Client, axes: list[str], *, headers: dict | None = None, styles: int = 1, **form: str
) -> httpx.Response:
    data: dict = {**FAST, **form, "sweep": axes}  # a list: the field repeated
    return client.post("/sweeps", files=files(styles), data=data, headers=headers or {})


def wait_completed(client: httpx.Client, sweep_id: str, timeout_s: float = 90) -> dict:
    def completed():
        sweep = client.get(f"/sweeps/{sweep_id}").json()
        return sweep if sweep["status"] == "completed" else None

    return wait_until(completed, timeout_s=timeout_s, interval_s=0.2, what=f"sweep {sweep_id}")


def test_sweep_paints_every_cell_as_a_job_and_a_labelled_sheet(stack):
    with stack.client() as client:
        response = post_sweep(client, ["style_weight=5,15,45", "look=subtle,painterly"])
        assert response.status_code == 202, response.text
        sweep = response.json()
        assert response.headers["Location"] == f"/sweeps/{sweep['id']}"
        assert sweep["axes"] == {"style_weight": ["5", "15", "45"], "look": ["subtle", "painterly"]}
        assert [list(c["values"].items()) for c in sweep["cells"][:4]] == [  # the first axis across
            [("style_weight", "5"), ("look", "subtle")],
            [("style_weight", "15"), ("look", "subtle")],
            [("style_weight", "45"), ("look", "subtle")],
            [("style_weight", "5"), ("look", "painterly")],
        ]
        assert sweep["progress"]["cells"] == 6 and len({c["job_id"] for c in sweep["cells"]}) == 6
        early = client.get(f"/sweeps/{sweep['id']}/sheet")
        assert early.status_code == 409 and early.json()["error"]["code"] == "sweep_not_done"
        done = wait_completed(client, sweep["id"])
        assert done["progress"] | {"fraction": 1.0} == {
            "cells": 6,
            "ended": 6,
            "queued": 0,
            "running": 0,
            "succeeded": 6,
            "failed": 0,
            "canceled": 0,
            "fraction": 1.0,
        }
        for cell in done["cells"]:
            job = client.get(cell["links"]["job"]).json()  # each cell is a job of its own
            assert job["sweep_id"] == sweep["id"]
            assert job["params"]["style_weight"] == float(cell["values"]["style_weight"])
            assert job["params"]["look"] == cell["values"]["look"] and cell["step"] == cell["steps"] == 2
        sheet = client.get(f"/sweeps/{sweep['id']}/sheet")
        assert sheet.status_code == 200 and sheet.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(sheet.content))
        assert image.size == (3 * 256 + 4 * 8, 2 * (256 + 22) + 3 * 8)  # three across, two down
        bottom = 8 + 256 - 1  # a landscape picture sits on its label, not halfway up its square
        assert image.getpixel((8 + 128, bottom)) != (255, 255, 255) and image.getpixel((8 + 128, 8)) == (255, 255, 255)
        record = provenance.read(sheet.content)
        assert record is not None and record["sweep"]["id"] == sweep["id"]
        assert record["sweep"]["axes"] == sweep["axes"] and "style_weight" not in record["params"]
        cells = record["sweep"]["cells"]
        assert [c["values"] for c in cells] == [c["values"] for c in sweep["cells"]]
        assert all(c["record"]["params"]["style_weight"] == float(c["values"]["style_weight"]) for c in cells)
        webp = client.get(f"/sweeps/{sweep['id']}/sheet", headers={"Accept": "image/webp"})
        assert webp.headers["content-type"] == "image/webp" and provenance.read(webp.content) == record


def test_a_sweep_over_the_styles_paints_each_style_alone(stack):
    with stack.client() as client:
        sweep = post_sweep(client, ["style=1,2", "style_weight=5,45"], styles=2).json()
        done = wait_completed(client, sweep["id"])
        assert done["progress"]["succeeded"] == 4
        sheet = provenance.read(client.get(f"/sweeps/{sweep['id']}/sheet").content)
        for cell in sheet["sweep"]["cells"]:
            job = client.get(f"/jobs/{cell['job_id']}").json()
            assert job["styles"] == 1 and job["params"]["style_weight"] == float(cell["values"]["style_weight"])
            chosen = STYLES[int(cell["values"]["style"]) - 1]
            assert cell["record"]["sha256"]["styles"] == [provenance.sha256(chosen)]
        assert sheet["sweep"]["axes"] == {"style": ["1", "2"], "style_weight": ["5", "45"]}
        too_far = post_sweep(client, ["style=1,3"], styles=2)
        assert too_far.status_code == 422 and "style 3, of 2" in too_far.json()["error"]["message"]
        blended = post_sweep(client, ["style=1,2"], styles=2, style_blend="0.7,0.3")
        assert blended.status_code == 422 and blended.json()["error"]["field"] == "style_blend"


def test_a_cell_that_ends_early_leaves_the_others(stack):
    with stack.client() as client:
        sweep = post_sweep(client, ["style_weight=5,15,45"], steps="40").json()
        first = sweep["cells"][0]["job_id"]
        assert client.post(f"/jobs/{first}/cancel").status_code == 202
        done = wait_completed(client, sweep["id"])
        assert [c["status"] for c in done["cells"]] == ["canceled", "succeeded", "succeeded"]
        sheet = client.get(f"/sweeps/{sweep['id']}/sheet")
        assert sheet.status_code == 200
        cells = provenance.read(sheet.content)["sweep"]["cells"]
        assert [c["status"] for c in cells] == ["canceled", "succeeded", "succeeded"] and cells[0]["record"] is None


def test_cancel_and_delete_act_on_every_cell(stack):
    connection = redis.Redis.from_url(stack.redis_url)
    with stack.client() as client:
        sweep = post_sweep(client, ["style_weight=5,15,45,135"], steps="600").json()
        wait_until(lambda: client.get(f"/sweeps/{sweep['id']}").json()["progress"]["running"] == 2, timeout_s=30)
        canceled = client.post(f"/sweeps/{sweep['id']}/cancel")
        assert canceled.status_code == 202
        done = wait_completed(client, sweep["id"], timeout_s=30)
        assert [c["status"] for c in done["cells"]] == ["canceled"] * 4
        no_sheet = client.get(f"/sweeps/{sweep['id']}/sheet")
        assert no_sheet.status_code == 409 and no_sheet.json()["error"]["code"] == "no_result"
        assert client.delete(f"/sweeps/{sweep['id']}").json() == {"id": sweep["id"], "deleted": True}
        assert client.get(f"/sweeps/{sweep['id']}").json()["error"]["code"] == "sweep_not_found"
        for cell in sweep["cells"]:
            assert client.get(f"/jobs/{cell['job_id']}").status_code == 404
            assert not (stack.storage_dir / cell["job_id"]).exists()
            assert not connection.exists(Keys.job(cell["job_id"]))
        assert not connection.exists(sweep_key(sweep["id"]))


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        (["colour=1,2"], "cannot be swept"),
        (["style_weight=1,2", "style_weight=3"], "different parameters"),
        (["style_weight=1,2,3,4,5", "look=subtle,painterly,texture,strong"], "at most 16"),
        (["style_weight=1,abc"], "style_weight=abc"),
        (["style_weight=1,,2"], "values separated by commas"),
        (["style=first"], "style images' numbers"),
        (["a=1", "b=2", "c=3"], "one or two axes"),
        ([], "sweep"),
    ],
)
def test_bad_sweeps_are_422_and_queue_nothing(stack, axes, message):
    connection = redis.Redis.from_url(stack.redis_url)
    before = connection.zcard(Keys.jobs_index)
    with stack.client() as client:
        response = post_sweep(client, axes)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "sweep" and message in error["message"]
    assert connection.zcard(Keys.jobs_index) == before


def test_prefer_wait_answers_the_ended_sweep_or_202_after_the_wait(stack):
    with stack.client() as client:
        response = post_sweep(client, ["style_weight=5,45"], headers={"Prefer": "wait=30"})
        assert response.status_code == 200, response.text
        sweep = response.json()
        assert sweep["status"] == "completed" and sweep["progress"]["succeeded"] == 2
        assert response.headers["Preference-Applied"] == "wait=30"
        assert response.headers["Location"] == f"/sweeps/{sweep['id']}"
        assert client.get(f"/sweeps/{sweep['id']}/sheet").status_code == 200
        started = time.monotonic()
        long = post_sweep(client, ["style_weight=5,45"], steps="600", headers={"Prefer": "respond-async, wait=1"})
        assert long.status_code == 202 and long.json()["status"] == "running"
        assert long.headers["Preference-Applied"] == "wait=1" and 1 <= time.monotonic() - started < 20
        at_once = post_sweep(client, ["style_weight=5"], steps="600", headers={"Prefer": "respond-async"})
        assert at_once.status_code == 202 and "Preference-Applied" not in at_once.headers
        for done in (long, at_once):
            client.post(f"/sweeps/{done.json()['id']}/cancel")
            wait_completed(client, done.json()["id"])


def test_a_sweep_counts_as_its_cells_against_the_queue_and_the_rate(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, workers=0, max_queued_jobs=5, rate_limit_submissions_per_min=6)
    try:
        with stack.client() as client:
            assert post_sweep(client, ["style_weight=1,2,3"]).status_code == 202  # 3 waiting, 3 counted
            full = post_sweep(client, ["style_weight=1,2,3"])  # 6 would wait: refused (as a job it counts 1)
            assert full.status_code == 503 and full.json()["error"]["code"] == "queue_full"
            assert post_sweep(client, ["style_weight=1,2"]).status_code == 202  # 5 waiting; 3 + 1 + 2 counted
            limited = client.post("/jobs", files=files(), data=FAST)  # the 7th submission this minute
            assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    finally:
        stack.stop()


def test_idempotency_key_finds_the_same_sweep(stack):
    connection = redis.Redis.from_url(stack.redis_url)
    with stack.client() as client:
        first = post_sweep(client, ["style_weight=5,15"], headers={"Idempotency-Key": "sweep-1"}).json()
        before = connection.zcard(Keys.jobs_index)
        again = post_sweep(client, ["style_weight=5,15"], headers={"Idempotency-Key": "sweep-1"})
        assert again.status_code == 202 and again.json()["id"] == first["id"]
        assert connection.zcard(Keys.jobs_index) == before  # no new cells
        other = post_sweep(client, ["style_weight=5,45"], headers={"Idempotency-Key": "sweep-1"})
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
        # A job's Idempotency-Key and a sweep's never meet.
        job = client.post("/jobs", files=files(), data=FAST, headers={"Idempotency-Key": "sweep-1"})
        assert job.status_code == 202 and job.json()["id"] not in {c["job_id"] for c in first["cells"]}


def test_a_sweep_claim_left_by_a_dead_request_is_taken_over_after_its_lease(tmp_path, redis_server):
    connection = redis.Redis.from_url(next_database_url(redis_server.url))
    settings = Settings(storage_dir=tmp_path)
    submissions = Submissions(
        settings=settings,
        store=JobStore(connection, ttl_s=settings.result_ttl_s),
        storage=LocalStorage(tmp_path / "storage"),
        queue=Queue("nst", connection=connection, serializer=JSONSerializer),
        claim_lease_s=1.0,
    )
    sweeps = SweepSubmissions(submissions, SweepStore(connection, ttl_s=settings.result_ttl_s))
    content, styles = make_image(80, 60, seed=1), [STYLES[0]]

    def request() -> tuple:
        sweep = new_sweep(parse_axes(["style_weight=5,15"], max_cells=settings.max_sweep_cells), owner=None)
        cells = [
            TransferParams(max_size=64, steps=2, style_weight=cell["values"]["style_weight"]) for cell in sweep.cells
        ]
        return sweep, cells, [[0] for _ in cells], {}, content, styles, []

    # The dead request got as far as its claim, written as the code writes it: no files, no sweep.
    dead, cells, _, extra, *_ = request()
    digest = _sweep_digest(dead, cells, extra, content, styles)
    claim, _ = sweeps.sweep_claims().claim(owner=None, idempotency_key="key-s", made_id=dead.id, body_hash=digest)
    assert claim is not None
    try:
        retried = sweeps._create(*request(), None, "key-s")  # before: 409 sweep_in_progress for NST_RESULT_TTL_S
        assert retried.id != dead.id and sweeps.sweeps.get(retried.id) is not None
        assert all(submissions.store.get(job_id) is not None for job_id in retried.job_ids)
        assert sweeps._create(*request(), None, "key-s").id == retried.id  # and the key now names it
    finally:
        connection.flushdb()
