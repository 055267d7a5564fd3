"""An Idempotency-Key's claim and its job's record: a request that dies in between frees the key within the
claim's lease, and a retry while the first request still stores its files gets the first one's job."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from nst_shared.jobs import JobStore
from nst_shared.params import TransferParams
from nst_shared.settings import Settings
from nst_shared.storage import LocalStorage
from service.submission import Submissions, _request_digest
from tests.conftest import make_image, next_database_url

PARAMS = TransferParams(max_size=64, steps=6)
CONTENT, STYLE = make_image(80, 60, seed=1), make_image(64, 64, seed=2)


class SlowStorage(LocalStorage):
    """A folder that takes `delays_s` for the first files written (in turn), as a distant bucket can."""

    delays_s: list[float] = []

    def put(self, job_id: str, name: str, data: bytes) -> None:
        time.sleep(self.delays_s.pop(0) if self.delays_s else 0.0)
        super().put(job_id, name, data)


@pytest.fixture
def submissions(redis_server, tmp_path):
    connection = redis.Redis.from_url(next_database_url(redis_server.url))
    settings = Settings(storage_dir=tmp_path)
    storage = SlowStorage(tmp_path / "storage")
    made = Submissions(
        settings=settings,
        store=JobStore(connection, ttl_s=settings.result_ttl_s),
        storage=storage,
        queue=Queue("nst", connection=connection, serializer=JSONSerializer),
        claim_lease_s=1.0,
    )
    yield made
    connection.flushdb()


def create(submissions: Submissions, key: str):
    return submissions._create(PARAMS, {"explicit": []}, CONTENT, [STYLE], [], None, key)


def test_a_claim_left_by_a_dead_request_frees_its_key_within_the_lease(submissions):
    # The dead request got as far as its claim: no files, no record.
    digest = _request_digest(PARAMS, {"explicit": []}, CONTENT, [STYLE])
    claim, existing = submissions.job_claims().claim(
        owner=None, idempotency_key="key-1", made_id="0" * 32, body_hash=digest
    )
    assert claim is not None and existing is None
    started = time.monotonic()
    retried = create(submissions, "key-1")  # before: 404 for the claim's 24 h
    assert submissions.store.get(retried.record.id) is not None
    assert time.monotonic() - started < 10
    assert create(submissions, "key-1").record.id == retried.record.id  # and the key now names it


def test_a_retry_while_the_first_request_stores_its_files_gets_its_job(submissions):
    # Two files of 1.5 s: 3 s, longer than the 2.5 s a retry used to wait; each within the 2 s lease.
    submissions.storage.delays_s = [1.5, 1.5]
    submissions.claim_lease_s = 2.0
    first: list = []
    thread = threading.Thread(target=lambda: first.append(create(submissions, "key-2")))
    thread.start()
    time.sleep(0.3)
    retried = create(submissions, "key-2")
    thread.join(30)
    assert retried.record.id == first[0].record.id


def test_a_first_request_whose_lease_ran_out_gives_way_to_the_retry_that_took_over(submissions):
    submissions.storage.delays_s = [2.0]  # its first file takes twice its 1 s lease: it is taken for dead
    first: list = []
    thread = threading.Thread(target=lambda: first.append(create(submissions, "key-3")))
    thread.start()
    time.sleep(1.3)  # the first one's lease has run out: this one takes the key over
    retried = create(submissions, "key-3")
    thread.join(30)
    assert first[0].record.id == retried.record.id  # one job for the key, not two
    assert len(submissions.store.recent(offset=0, limit=10, owner=None)[0]) == 1
