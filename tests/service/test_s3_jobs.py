"""A job end to end with its files in S3 (a real moto_server process): nothing touches the local folder."""

from __future__ import annotations

import io

from PIL import Image

from tests.conftest import start_stack, wait_until
from tests.service.test_jobs import submit, wait_status


def test_job_with_s3_storage(tmp_path, redis_server, s3_env):
    bucket = s3_env.create_bucket("nst-e2e")
    stack = start_stack(  # the storage is the subject, not the picture
        tmp_path,
        redis_server.url,
        engine="tests.engines:InstantEngine",
        storage_url=f"s3://{bucket}/jobs",
        s3_endpoint_url=s3_env.url,
    )
    try:
        with stack.client() as client:
            job = submit(client, preview_every="2").json()
            wait_status(client, job["id"], {"succeeded"})
            keys = s3_env.keys(bucket)
            assert {
                f"jobs/{job['id']}/{name}" for name in ("content", "style-0", "preview-1.webp", "result-1.png")
            } <= set(keys)
            result = client.get(f"/jobs/{job['id']}/result")
            assert result.status_code == 200 and Image.open(io.BytesIO(result.content)).size == (64, 48)
            assert client.get(f"/jobs/{job['id']}/preview").status_code == 200
            assert not stack.storage_dir.exists() or not any(stack.storage_dir.iterdir())
            assert client.delete(f"/jobs/{job['id']}").status_code == 200
            wait_until(lambda: not s3_env.keys(bucket, f"jobs/{job['id']}/"), timeout_s=10, what="files deleted")
    finally:
        stack.stop()
