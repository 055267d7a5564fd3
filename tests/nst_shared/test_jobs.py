"""The job store against a real Redis: writes that race a DELETE, the indexes, the outbox."""

from __future__ import annotations

import json
import time

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from nst_shared.job_status import JobStatus
from nst_shared.jobs import JobStore, StopRequest, new_job_id
from nst_shared.keys import Keys
from nst_shared.queueing import MAX_REPAIRS, enqueue_job, repair_queued, requeue
from nst_shared.settings import Settings
from nst_shared.storage import LocalStorage
from nst_shared.sweeper import Sweeper
from nst_shared.webhook_outbox import delivery_body
from tests.conftest import next_database_url


@pytest.fixture
def connection(redis_server):
    client = redis.Redis.from_url(next_database_url(redis_server.url))
    yield client
    client.flushdb()


@pytest.fixture
def store(connection) -> JobStore:
    return JobStore(connection, ttl_s=60)


def test_set_fields_never_resurrects_a_deleted_record(store, connection):
    job_id = new_job_id()
    store.create(job_id, params={"steps": 1}, styles=1)
    assert store.set_fields(job_id, rq_job_id=job_id) is True
    store.delete(job_id)
    assert store.set_fields(job_id, params={"steps": 2}) is False  # a worker writing after a DELETE
    assert not connection.exists(Keys.job(job_id)) and store.get(job_id) is None


def test_transition_writes_webhook_deliveries_in_the_same_script(store, connection):
    job_id = new_job_id()
    hook = {"url": "https://8.8.8.8/hook", "events": ["status", "completed"]}
    store.create(job_id, params={"steps": 1}, styles=1, extra={"webhook": hook})
    assert connection.llen(Keys.webhooks_pending) == 0  # the submission itself is not a change of status
    store.transition(job_id, JobStatus.RUNNING, allowed={JobStatus.QUEUED})
    store.transition(job_id, JobStatus.SUCCEEDED, allowed={JobStatus.RUNNING})
    assert not store.transition(job_id, JobStatus.FAILED, allowed={JobStatus.RUNNING})  # refused: nothing sent
    entries = [json.loads(raw) for raw in reversed(connection.lrange(Keys.webhooks_pending, 0, -1))]
    assert [(e["event"], e["record"]["status"]) for e in entries] == [
        ("status", "running"),
        ("status", "succeeded"),
        ("completed", "succeeded"),
    ]
    assert len({e["id"] for e in entries}) == 3 and all(e["url"] == hook["url"] for e in entries)
    body = delivery_body(entries[-1])
    assert body["type"] == "job.completed" and body["job"]["id"] == job_id
    assert body["job"]["params"] == {"steps": 1} and body["job"]["finished_at"].endswith("+00:00")


def test_stop_requests_cancel_wins_over_finish_and_steps_done_is_recorded(store, connection):
    job_id = new_job_id()
    store.create(job_id, params={"steps": 9}, styles=1)
    assert store.stop_requested(job_id) is None
    store.request_finish(job_id)
    assert store.stop_requested(job_id) is StopRequest.FINISH
    store.request_cancel(job_id)
    assert store.stop_requested(job_id) is StopRequest.CANCEL
    assert 0 < connection.ttl(Keys.finish(job_id)) <= 60  # the flag expires with the job
    store.transition(job_id, JobStatus.RUNNING, allowed={JobStatus.QUEUED})
    store.transition(job_id, JobStatus.SUCCEEDED, allowed={JobStatus.RUNNING}, steps_done=4)
    assert store.get(job_id).steps_done == 4


def test_recent_reads_one_page_of_the_owners_index(store, connection):
    mine = [new_job_id() for _ in range(5)]
    for i, job_id in enumerate(mine):
        store.create(job_id, params={}, styles=1, owner="alice", now=1000.0 + i)
        store.create(new_job_id(), params={}, styles=1, owner="bob", now=1000.5 + i)
    connection.delete(Keys.job(mine[3]))  # expired
    page, total = store.recent(offset=0, limit=2, owner="alice")
    assert [r.id for r in page] == [mine[4], mine[2]] and total == 4  # the expired id left the index
    page, total = store.recent(offset=2, limit=5, owner="alice")
    assert [r.id for r in page] == [mine[1], mine[0]]
    assert store.recent(offset=0, limit=100, owner=None)[1] == 9
    assert store.recent(offset=2**63, limit=5, owner="alice") == ([], 4)  # past the end: empty, not an error
    store.delete(mine[0])
    assert store.recent(offset=0, limit=100, owner="alice")[1] == 3


def test_prune_indexes_drops_expired_ids(store, connection):
    old, young = new_job_id(), new_job_id()
    store.create(old, params={}, styles=1, owner="alice", now=1000.0)
    store.create(young, params={}, styles=1, owner="alice")
    connection.delete(Keys.job(old), Keys.job(young))
    assert store.prune_indexes() == 2  # old enough to have expired; the young id waits for a read
    assert connection.zrange(Keys.jobs_index, 0, -1) == [young.encode()]


def _queue(connection) -> Queue:
    return Queue("nst", connection=connection, serializer=JSONSerializer)


def _queued_job(store: JobStore, queue: Queue, *, now: float) -> str:
    job_id = new_job_id()
    store.create(job_id, params={"steps": 1, "max_size": 64}, styles=1, now=now)
    store.set_fields(job_id, rq_job_id=job_id)
    enqueue_job(queue, job_id, settings=Settings(), params={"steps": 1, "max_size": 64})
    return job_id


def test_requeue_changes_status_and_queue_together(store, connection):
    queue = _queue(connection)
    job_id = _queued_job(store, queue, now=time.time())
    queue.remove(job_id)  # a worker took it...
    assert store.start(job_id, heartbeat_ttl_s=30) == 1
    assert requeue(store, queue, job_id, settings=Settings(), only_if_lost=True) is None  # it beats
    rq_id = requeue(store, queue, job_id, settings=Settings(), attempt=1)
    record = store.get(job_id)
    assert record.status is JobStatus.QUEUED and record.rq_job_id == rq_id == f"{job_id}-1"
    assert queue.job_ids == [rq_id] and connection.zscore(Keys.queued, job_id) is not None
    assert requeue(store, queue, job_id, settings=Settings()) is None  # not running any more
    assert record.lost_attempts == 0  # its worker stopped: not a death


def test_a_stale_attempts_writes_are_refused(store, connection):
    queue = _queue(connection)
    job_id = _queued_job(store, queue, now=time.time())
    stale = store.start(job_id, heartbeat_ttl_s=30)
    assert stale == 1 and connection.get(Keys.heartbeat(job_id)) == b"1"  # the first beat names the attempt
    assert store.running_event(job_id, "progress", {"step": 1}, attempt=stale, progress={"step": 1})
    connection.delete(Keys.heartbeat(job_id))  # its worker was cut off: the sweeper requeues the job
    assert requeue(store, queue, job_id, settings=Settings(), only_if_lost=True) == f"{job_id}-1"
    current = store.start(job_id, heartbeat_ttl_s=30)
    assert current == 2
    events_before = connection.xlen(Keys.events(job_id))
    fields_before = connection.hgetall(Keys.job(job_id))
    # The cut-off attempt wakes up: every write it tries is refused in the scripts.
    assert not store.running_event(job_id, "progress", {"step": 7}, attempt=stale, progress={"step": 7})
    assert not store.running_event(job_id, "preview", {"step": 7}, attempt=stale, preview_file="preview-1.png")
    assert not store.set_fields(job_id, attempt=stale, params={"steps": 2})
    assert not store.beat(job_id, attempt=stale, ttl_s=30)
    store.end_beat(job_id, attempt=stale)  # the successor's beat stays
    assert not store.transition(job_id, JobStatus.SUCCEEDED, allowed={JobStatus.RUNNING}, attempt=stale)
    assert requeue(store, queue, job_id, settings=Settings(), attempt=stale) is None
    assert connection.xlen(Keys.events(job_id)) == events_before
    assert connection.hgetall(Keys.job(job_id)) == fields_before
    assert connection.get(Keys.heartbeat(job_id)) == b"2"
    # The current attempt writes as before, and names its result.
    assert store.running_event(job_id, "progress", {"step": 1}, attempt=current, progress={"step": 1})
    assert store.beat(job_id, attempt=current, ttl_s=30)
    assert store.transition(
        job_id, JobStatus.SUCCEEDED, allowed={JobStatus.RUNNING}, attempt=current, result_file="result-2.png"
    )
    store.end_beat(job_id, attempt=current)
    record = store.get(job_id)
    assert record.status is JobStatus.SUCCEEDED and record.attempts == 2 and record.lost_attempts == 1
    assert record.result_file == "result-2.png" and not connection.exists(Keys.heartbeat(job_id))


def test_only_lost_attempts_count_against_retry_lost_jobs(store, connection, tmp_path):
    queue = _queue(connection)
    job_id = _queued_job(store, queue, now=time.time())
    sweeper = Sweeper(store, LocalStorage(tmp_path), Settings(retry_lost_jobs=1, heartbeat_ttl_s=0))
    for _ in range(3):  # a rolling restart: three workers stopped with SIGTERM in turn
        attempt = store.start(job_id, heartbeat_ttl_s=30)
        assert requeue(store, queue, job_id, settings=Settings(), attempt=attempt) is not None
    store.start(job_id, heartbeat_ttl_s=30)
    connection.delete(Keys.heartbeat(job_id))  # then its worker dies: one death, retried once
    sweeper.sweep()
    assert store.get(job_id).status is JobStatus.QUEUED
    store.start(job_id, heartbeat_ttl_s=30)
    connection.delete(Keys.heartbeat(job_id))  # a second death: past NST_RETRY_LOST_JOBS
    sweeper.sweep()
    record = store.get(job_id)
    assert record.status is JobStatus.FAILED and record.error["code"] == "worker_lost"
    assert record.attempts == 5 and record.lost_attempts == 1


def test_repair_queues_again_records_without_an_rq_job_then_fails_them(store, connection):
    queue = _queue(connection)
    now = time.time()
    waiting = _queued_job(store, queue, now=now - 600)  # an old job, waiting in RQ all along
    in_flight = new_job_id()  # a submission between its record and its RQ job: spared by the grace period
    store.create(in_flight, params={"steps": 1, "max_size": 64}, styles=1, now=now)
    stranded = new_job_id()  # a submission (or requeue) that crashed before its RQ job
    store.create(stranded, params={"steps": 1, "max_size": 64}, styles=1, now=now - 600)
    assert repair_queued(store, queue, settings=Settings(), grace_s=60, now=now) == 0  # suspected only
    assert repair_queued(store, queue, settings=Settings(), grace_s=60, now=now + 2) == 1  # still without one
    record = store.get(stranded)
    assert record.status is JobStatus.QUEUED and record.rq_job_id in queue.job_ids
    assert store.get(in_flight).rq_job_id is None and store.get(waiting).rq_job_id == waiting
    for later in range(1, MAX_REPAIRS + 1):  # lost again and again (Redis restarted without its data, say)
        for rq_id in queue.job_ids:
            connection.delete(Job.key_for(rq_id))
        queue.empty()
        for seen in (0, 2):
            repair_queued(store, queue, settings=Settings(), grace_s=60, now=now + 120 * later + seen)
    failed = store.get(stranded)
    assert failed.status is JobStatus.FAILED and failed.error["code"] == "queue_lost"
    assert connection.zscore(Keys.queued, stranded) is None


def test_repair_queues_again_a_job_its_worker_dequeued_and_died_with(store, connection):
    queue = _queue(connection)
    now = time.time()
    job_id = _queued_job(store, queue, now=now - 600)
    connection.lmove(queue.key, queue.intermediate_queue_key)  # RQ's dequeue, then the worker was killed
    assert repair_queued(store, queue, settings=Settings(), grace_s=60, now=now) == 0
    assert repair_queued(store, queue, settings=Settings(), grace_s=60, now=now + 2) == 1
    assert store.get(job_id).rq_job_id in queue.job_ids
