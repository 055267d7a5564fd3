"""Both storage backends behave alike: the local folder and S3 (against a real moto_server process)."""

from __future__ import annotations

import time
import uuid

import pytest

from nst_shared.jobs import JobStore
from nst_shared.s3_storage import S3Storage
from nst_shared.settings import Settings
from nst_shared.storage import LocalStorage, open_storage
from nst_shared.sweeper import Sweeper


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "storage")
    server = request.getfixturevalue("s3_env")
    bucket = server.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
    return open_storage(Settings(storage_url=f"s3://{bucket}/some/prefix", s3_endpoint_url=server.url))


def test_put_get_exists_and_delete_job(storage):
    storage.put("job1", "content", b"abc")
    storage.put("job1", "result.png", b"png")
    storage.put("job2", "content", b"xyz")
    storage.put("job1", "content", b"abcd")  # overwritten whole
    assert storage.get("job1", "content") == b"abcd"
    assert storage.exists("job1", "result.png") and not storage.exists("job1", "preview.png")
    assert storage.get("job1", "preview.png") is None and storage.get("nojob", "content") is None
    assert sorted(storage.job_ids()) == ["job1", "job2"]
    assert abs(storage.modified_at("job1") - time.time()) < 60 and storage.modified_at("nojob") is None
    storage.delete_job("job1")
    storage.delete_job("nojob")
    assert storage.job_ids() == ["job2"] and storage.get("job1", "content") is None


def test_put_refuses_unsafe_keys(storage):
    for job_id, name in (("..", "x"), ("a/b", "x"), ("job", "../x"), ("job", "")):
        with pytest.raises(ValueError):
            storage.put(job_id, name, b"x")


def test_s3_prefixes_keep_apart(s3_env):
    bucket = s3_env.create_bucket("shared-bucket")
    first = open_storage(Settings(storage_url=f"s3://{bucket}/one", s3_endpoint_url=s3_env.url))
    second = open_storage(Settings(storage_url=f"s3://{bucket}/two/", s3_endpoint_url=s3_env.url))
    first.put("job", "content", b"1")
    second.put("job", "content", b"2")
    assert s3_env.keys(bucket) == ["one/job/content", "two/job/content"]
    first.delete_job("job")
    assert s3_env.keys(bucket) == ["two/job/content"] and second.get("job", "content") == b"2"


def test_s3_delete_job_with_more_than_a_thousand_files(s3_env):
    bucket = s3_env.create_bucket("many-files")
    storage = open_storage(Settings(storage_url=f"s3://{bucket}", s3_endpoint_url=s3_env.url))
    for i in range(1003):
        storage.put("job", f"f{i}", b"")
    storage.delete_job("job")
    assert s3_env.keys(bucket) == []


def test_open_storage_picks_the_backend(tmp_path):
    assert isinstance(open_storage(Settings(storage_dir=tmp_path)), LocalStorage)
    s3 = open_storage(Settings(storage_url="s3://bucket/a/b", s3_endpoint_url="http://127.0.0.1:1"))
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix) == ("bucket", "a/b/")
    with pytest.raises(ValueError):
        open_storage(Settings(storage_url="gs://bucket"))


def test_sweep_deletes_old_orphans_only(storage, redis_server):
    store = JobStore(redis_server.client(), ttl_s=60)
    store.create("kept", params={}, styles=1)
    for job_id in ("kept", "orphan"):
        storage.put(job_id, "content", b"x")
    sweeper = Sweeper(store, storage, Settings(orphan_grace_s=300))
    assert sweeper.sweep()  # young orphans are left: the API writes files first
    assert sorted(storage.job_ids()) == ["kept", "orphan"]
    assert sweeper.sweep(now=time.time() + 600)
    assert storage.job_ids() == ["kept"]
    store.delete("kept")
    sweeper.release()


def test_a_failed_local_write_leaves_no_temporary_file(tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    storage.put("job1", "content", b"abc")
    (tmp_path / "storage" / "job1" / "result-1.png").mkdir()  # the rename onto it fails, as a lost mount's would
    with pytest.raises(OSError):
        storage.put("job1", "result-1.png", b"png")
    assert sorted(p.name for p in (tmp_path / "storage" / "job1").iterdir()) == ["content", "result-1.png"]
