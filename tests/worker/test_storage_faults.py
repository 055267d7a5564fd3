"""Storage going away under a running job (a private moto_server stopped mid-job): previews are skipped, the
result is tried again, then the job fails with its own code; the worker lives on."""

from __future__ import annotations

from tests.conftest import S3Server, start_stack, wait_until
from tests.service.test_jobs import submit, wait_status


def test_storage_lost_mid_job_skips_previews_then_fails_storage_unavailable(tmp_path, redis_server, monkeypatch):
    for name, value in S3Server.ENV.items():
        monkeypatch.setenv(name, value)
    server = S3Server(tmp_path / "moto.log")
    try:
        bucket = server.create_bucket("cut")
        stack = start_stack(
            tmp_path,
            redis_server.url,
            engine="tests.engines:SlowEngine",
            storage_url=f"s3://{bucket}/jobs",
            s3_endpoint_url=server.url,
            s3_max_attempts=1,
            s3_connect_timeout_s=1,
        )
        try:
            with stack.client() as client:
                job = submit(client, steps="60", preview_every="1").json()
                wait_until(
                    lambda: client.get(f"/jobs/{job['id']}").json()["preview_step"], timeout_s=60, what="a preview"
                )
                server.stop()  # the bucket's host is gone
                final = wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=90)
                assert final["status"] == "failed" and final["error"]["code"] == "storage_unavailable"
                assert final["progress"]["step"] == 60  # the previews it could not write did not stop it
                log = (stack.log_dir / "worker-0.log").read_text()
                assert "skipped: storage failed" in log and "trying again" in log
                assert stack.workers[0].poll() is None
        finally:
            stack.stop()
    finally:
        if server.process.poll() is None:
            server.stop()
