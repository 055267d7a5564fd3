"""Results and previews are streamed from the storage in chunks (never read whole into the API's memory) and
answer Range requests, from a folder and from S3."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import start_stack
from tests.service.test_jobs import submit, wait_status

BIG_BYTES = 96 * 2**20
INSTANT = "tests.engines:InstantEngine"  # the bytes served are the subject, not the picture


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def check_ranges(client, job_id: str, whole: bytes) -> None:
    url = f"/jobs/{job_id}/result"
    full = client.get(url)
    assert full.status_code == 200 and full.content == whole
    assert full.headers["accept-ranges"] == "bytes" and int(full.headers["content-length"]) == len(whole)
    first = client.get(url, headers={"Range": "bytes=0-9"})
    assert first.status_code == 206 and first.content == whole[:10]
    assert first.headers["content-range"] == f"bytes 0-9/{len(whole)}"
    middle = client.get(url, headers={"Range": "bytes=20-"})
    assert middle.status_code == 206 and middle.content == whole[20:]
    last = client.get(url, headers={"Range": "bytes=-7"})
    assert last.status_code == 206 and last.content == whole[-7:]
    past = client.get(url, headers={"Range": f"bytes={len(whole)}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(whole)}"
    assert past.json()["error"]["code"] == "range_not_satisfiable"


def test_result_by_range_from_a_folder(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, engine=INSTANT)
    try:
        with stack.client() as client:
            job = submit(client).json()
            wait_status(client, job["id"], {"succeeded"})
            check_ranges(client, job["id"], (stack.storage_dir / job["id"] / "result-1.png").read_bytes())
    finally:
        stack.stop()


def test_result_by_range_from_s3(tmp_path, redis_server, s3_env):
    bucket = s3_env.create_bucket("nst-ranges")
    stack = start_stack(
        tmp_path, redis_server.url, engine=INSTANT, storage_url=f"s3://{bucket}/jobs", s3_endpoint_url=s3_env.url
    )
    try:
        with stack.client() as client:
            job = submit(client).json()
            wait_status(client, job["id"], {"succeeded"})
            whole = s3_env.client().get_object(Bucket=bucket, Key=f"jobs/{job['id']}/result-1.png")["Body"].read()
            check_ranges(client, job["id"], whole)
    finally:
        stack.stop()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the API's peak memory from /proc")
def test_a_large_result_is_not_held_whole_in_the_apis_memory(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, engine=INSTANT)
    try:
        with stack.client() as client:
            job = submit(client).json()
            wait_status(client, job["id"], {"succeeded"})
            # A print-size result, as far as the API can tell: 96 MB of bytes in place of the small PNG.
            (stack.storage_dir / job["id"] / "result-1.png").write_bytes(os.urandom(BIG_BYTES))
            before = peak_rss_bytes(stack.api.pid)
            received = 0
            with client.stream("GET", f"/jobs/{job['id']}/result") as response:
                assert response.status_code == 200
                for chunk in response.iter_bytes():
                    received += len(chunk)
            assert received == BIG_BYTES
            assert peak_rss_bytes(stack.api.pid) - before < BIG_BYTES // 3
    finally:
        stack.stop()
