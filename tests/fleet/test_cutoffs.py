"""Cut-offs on the multi-host bed: a worker, the API's Redis, the storage host cut silently, Redis restarted.
Each test ends with the ledger of the jobs it sent: none lost or stuck, no result written by a stale attempt."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import pytest
import redis
from rq import Worker

from nst_shared.jobs import JobRecord
from nst_shared.keys import Keys
from tests.conftest import make_image, wait_until
from tests.fleet import ledger
from tests.fleet.bed import BUCKET, WORKERS
from tests.fleet.conftest import FAST


def post_job(api: httpx.Client, **form: str) -> httpx.Response:
    """Sends a small job from the client host."""
    files = [("content", ("content.png", make_image(80, 60, seed=1), "image/png"))]
    files.append(("style", ("style.png", make_image(64, 64, seed=10), "image/png")))
    return api.post("/jobs", files=files, data={"max_size": "64", "steps": "20", "preview_every": "0", **form})


def submit(api: httpx.Client, **form: str) -> str:
    """Sends a small job from the client host; returns its id (the API must accept it)."""
    response = post_job(api, **form)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def record(store: redis.Redis, job_id: str) -> JobRecord | None:
    try:
        data = store.hgetall(Keys.job(job_id))
    except redis.exceptions.RedisError:
        return None
    return JobRecord.from_hash({k.decode(): v.decode() for k, v in data.items()}) if data else None


def wait_record(store: redis.Redis, job_id: str, predicate, *, timeout_s: float, what: str) -> JobRecord:
    def matches() -> JobRecord | None:
        found = record(store, job_id)
        return found if found is not None and predicate(found) else None

    return wait_until(matches, timeout_s=timeout_s, what=f"job {job_id}: {what}")


def step(found: JobRecord) -> int:
    return int((found.progress or {}).get("step") or 0)


def settled(store: redis.Redis, job_ids: list[str], *, timeout_s: float = 90) -> None:
    for job_id in job_ids:
        wait_record(store, job_id, lambda r: r.status.terminal, timeout_s=timeout_s, what="a terminal status")


def idle(store: redis.Redis, worker: str, *, timeout_s: float = 60) -> None:
    """Waits until `worker` has ended whatever job it held (a stale attempt included) and is idle again."""

    def done() -> bool:
        try:
            found = [w for w in Worker.all(connection=store) if w.name == worker]
        except redis.exceptions.RedisError:
            return False
        return bool(found) and found[0].get_current_job_id() is None and found[0].get_state() == "idle"

    wait_until(done, timeout_s=timeout_s, what=f"worker {worker} idle")


def objects(bed, job_id: str) -> dict[str, datetime]:
    reply = bed.s3().list_objects_v2(Bucket=BUCKET, Prefix=f"jobs/{job_id}/")
    return {item["Key"].rsplit("/", 1)[1]: item["LastModified"] for item in reply.get("Contents", [])}


def assert_ledger(store, api, job_ids: list[str], **expected: object) -> ledger.Ledger:
    taken = ledger.take(store, api, job_ids)
    print(taken.render())
    assert (taken.lost, taken.stuck, taken.stale_results) == (0, 0, 0), taken.render()
    for name, value in expected.items():
        assert getattr(taken, name) == value, taken.render()
    return taken


def test_bed_cut_is_silent(on_client):
    """A cut host's connections time out (no refusal, no reset), and come back when its link is restored."""
    bed = on_client
    bed.cut("storage")
    try:
        started = time.monotonic()
        with pytest.raises(httpx.ConnectTimeout):
            httpx.get(f"{bed.s3_url}/moto-api/", timeout=1.5)
        assert time.monotonic() - started >= 1.4
    finally:
        bed.restore("storage")
    assert httpx.get(f"{bed.s3_url}/moto-api/", timeout=10).status_code == 200


def test_api_cut_from_redis_answers_503_and_recovers(on_client, api, api2, store):
    bed = on_client
    accepted = [submit(client, steps="30") for client in (api, api2, api, api2)]
    wait_record(store, accepted[0], lambda r: step(r) >= 1, timeout_s=60, what="running")

    def ask(url: str, method: str) -> tuple[httpx.Response, float]:
        with bed.on("client"), httpx.Client(base_url=url, timeout=30) as client:
            started = time.monotonic()
            answer = post_job(client) if method == "POST" else client.get(f"/jobs/{accepted[0]}")
            return answer, time.monotonic() - started

    bed.cut("redis")
    try:  # both API processes at once, a submission and a read each
        with ThreadPoolExecutor(4) as pool:
            asked = [(url, method) for url in bed.api_urls for method in ("POST", "GET")]
            answers = list(pool.map(lambda a: ask(*a), asked))
    finally:
        bed.restore("redis")
    for (url, method), (answer, elapsed_s) in zip(asked, answers):
        assert answer.status_code == 503 and answer.headers["retry-after"], (url, method, answer.text)
        assert answer.json()["error"]["code"] == "redis_unavailable" and elapsed_s < 30
    for client in (api, api2):  # back by itself: nothing restarted
        wait_until(lambda c=client: c.get(f"/jobs/{accepted[1]}").status_code == 200, timeout_s=30, what="API back")
    accepted += [submit(api), submit(api2)]
    settled(store, accepted)
    assert_ledger(store, api, accepted, succeeded=len(accepted))


def test_storage_cut_skips_previews_and_the_job_succeeds(on_client, api, store):
    bed = on_client
    job_id = submit(api, steps="100", preview_every="3")
    cut_at_step = step(wait_record(store, job_id, lambda r: step(r) >= 6, timeout_s=60, what="painting"))
    bed.cut("storage")
    try:  # previews fail meanwhile: the painting goes on
        cut = wait_record(store, job_id, lambda r: step(r) >= cut_at_step + 10, timeout_s=90, what="steps while cut")
    finally:
        bed.restore("storage")
    settled(store, [job_id])
    final = record(store, job_id)
    assert final and final.preview_step and final.preview_step > step(cut)  # previews again once it is back
    assert api.get(f"/jobs/{job_id}/preview").status_code == 200
    assert_ledger(store, api, [job_id], succeeded=1)


def test_storage_down_fails_the_job_with_its_own_code(on_client, api, store):
    bed = on_client
    job_id = submit(api, steps="40")
    wait_record(store, job_id, lambda r: step(r) >= 3, timeout_s=60, what="painting")
    bed.cut("storage")
    try:
        failed = wait_record(store, job_id, lambda r: r.status.terminal, timeout_s=120, what="failed")
    finally:
        bed.restore("storage")
    assert failed.status.value == "failed"
    assert failed.error and failed.error["code"] == "storage_unavailable", failed.error
    assert not [name for name in objects(bed, job_id) if name.startswith("result")]
    for host in WORKERS:  # nothing half-written stays behind on a worker host
        assert not list((bed.root / host / "tmp").iterdir())
    assert_ledger(store, api, [job_id], failed={"storage_unavailable": 1})


def test_redis_restarted_on_its_host(on_client, api, api2, store):
    bed = on_client
    accepted = [submit(client, steps="40") for client in (api, api2, api, api2, api)]
    wait_record(store, accepted[0], lambda r: step(r) >= 3, timeout_s=60, what="running")
    time.sleep(1.5)  # the append-only file is fsynced every second: what was accepted is on disk
    bed.stop("redis", sig=signal.SIGKILL)
    time.sleep(FAST["heartbeat_ttl_s"] + 2)  # longer than a heartbeat lives
    bed.restart("redis")
    bed.wait_for_redis()
    for client in (api, api2):
        wait_until(lambda c=client: c.get(f"/jobs/{accepted[0]}").status_code == 200, timeout_s=30, what="API back")
    settled(store, accepted, timeout_s=120)
    assert_ledger(store, api, accepted, succeeded=len(accepted))


def cut_worker_mid_job(bed, api, store, *, steps: int) -> tuple[str, str]:
    """A job with previews running on one worker, whose link is then cut: (job id, that worker)."""
    job_id = submit(api, steps=str(steps), preview_every="5")
    first = wait_record(store, job_id, lambda r: step(r) >= 12, timeout_s=60, what="painting")
    assert first.worker in WORKERS and first.attempts == 1
    bed.cut(first.worker)
    return job_id, first.worker


def assert_one_attempt_wrote(bed, store, job_id: str, *, stale_worker: str) -> JobRecord:
    """Events after the last start are the record's attempt's, nothing follows the end, and the files the record
    names are that attempt's. A stale attempt's preview may land late (a write in flight at the cut, delivered
    when the link is back: no script can fence a file), but under its own name, which nothing serves."""
    final = record(store, job_id)
    assert final is not None and final.status.terminal
    events = ledger.events(store, job_id)
    starts = [i for i, (_, kind, data) in enumerate(events) if kind == "status" and data["status"] == "running"]
    ends = [i for i, (_, kind, _) in enumerate(events) if kind == "completed"]
    assert len(ends) == 1 and ends[0] == len(events) - 1, events[-5:]
    if final.status.value == "succeeded":
        steps = [data["step"] for _, kind, data in events[starts[-1] :] if kind == "progress"]
        # The running attempt reports every step in order: a stale attempt's report would break the run.
        assert steps == list(range(1, len(steps) + 1)), steps
        assert final.worker != stale_worker
        assert final.result_file == f"result-{final.attempts}.png"
    results = [name for name in objects(bed, job_id) if name.startswith("result")]
    assert results == ([final.result_file] if final.status.value == "succeeded" else []), results
    assert store.get(Keys.heartbeat(job_id)) is None  # the job has ended: no beat is left, stale or not
    return final


def test_worker_cut_mid_job_requeued_to_the_other_worker(on_client, api, store):
    bed = on_client
    bed.reconfigure(**FAST)
    job_id, stale = cut_worker_mid_job(bed, api, store, steps=200)
    try:  # lost after the heartbeat TTL, queued again, taken by the other worker
        wait_record(
            store,
            job_id,
            lambda r: r.attempts == 2 and r.status.value == "running" and r.worker != stale and step(r) >= 1,
            timeout_s=60,
            what="running again on the other worker",
        )
    finally:
        bed.restore(stale)  # back while its successor paints: whatever it still sends must be refused
    idle(store, stale)
    successor = record(store, job_id)
    assert successor and successor.status.value == "running" and successor.attempts == 2  # it came back meanwhile
    settled(store, [job_id], timeout_s=90)
    final = assert_one_attempt_wrote(bed, store, job_id, stale_worker=stale)
    assert final.status.value == "succeeded" and final.attempts == 2
    assert final.preview_file == f"preview-{final.attempts}.webp"
    assert_ledger(store, api, [job_id], succeeded=1)


def test_worker_cut_mid_job_without_retry_fails_worker_lost(on_client, api, store):
    bed = on_client
    bed.reconfigure(**{**FAST, "retry_lost_jobs": 0})
    job_id, stale = cut_worker_mid_job(bed, api, store, steps=200)  # still painting when back
    try:
        wait_record(store, job_id, lambda r: r.status.terminal, timeout_s=60, what="failed")
    finally:
        bed.restore(stale)
    idle(store, stale)
    final = assert_one_attempt_wrote(bed, store, job_id, stale_worker=stale)
    assert final.status.value == "failed" and final.error == {"code": "worker_lost", "message": final.error["message"]}
    assert_ledger(store, api, [job_id], failed={"worker_lost": 1})
