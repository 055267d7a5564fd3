"""Webhooks against the real service: signed deliveries, a retry after a failure, SSRF refusals."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from nst_client.webhooks import verify_signature
from tests.conftest import start_stack, wait_until
from tests.service.test_jobs import submit, wait_status

SECRET = "s3cret-for-tests"


class Receiver:
    """A loopback HTTP server that records deliveries and fails the first `fail_first` of them."""

    def __init__(self, fail_first: int = 1) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                status = 500 if len(receiver.deliveries) < fail_first else 204
                receiver.deliveries.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def hook_stack(tmp_path_factory, redis_server):
    stack = start_stack(tmp_path_factory.mktemp("hooks"), redis_server.url, webhook_secret=SECRET,
                        webhook_allow='["127.0.0.1/32"]', webhook_backoff_s=0.5)
    yield stack
    stack.stop()


def test_webhook_signed_and_retried(hook_stack):
    receiver = Receiver(fail_first=1)
    try:
        with hook_stack.client() as client:
            job = submit(client, webhook_url=receiver.url).json()
            wait_status(client, job["id"], {"succeeded"})
            wait_until(lambda: len(receiver.deliveries) >= 2, timeout_s=30, what="the retried delivery")
        (h1, b1, s1), (h2, b2, s2) = receiver.deliveries[:2]
        assert (s1, s2) == (500, 204)
        assert h1["webhook-id"] == h2["webhook-id"]  # the same message, retried
        assert verify_signature(SECRET, h2, b2)
        assert not verify_signature("wrong", h2, b2)
        assert not verify_signature(SECRET, h2, b2 + b" ")
        assert not verify_signature(SECRET, h2, b2, now=int(h2["webhook-timestamp"]) + 3600)  # replayed late
        body = json.loads(b2)
        assert body["type"] == "job.completed" and body["job"]["id"] == job["id"]
        assert body["job"]["status"] == "succeeded"
    finally:
        receiver.close()


def test_webhook_ssrf_refused(hook_stack, service):
    with service.client() as client:  # this stack has no secret: webhooks are off
        assert submit(client, webhook_url="https://example.org/x").json()["error"]["code"] == "webhooks_disabled"
    with hook_stack.client() as client:
        for url in ("http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://[::1]:8080/",
                    "ftp://example.org/x", "http://192.168.0.10/"):
            error = submit(client, webhook_url=url).json()["error"]
            assert error["field"] == "webhook_url" and error["code"] == "webhook_refused", (url, error)
        error = submit(client, webhook_url="http://127.0.0.1:9/x", webhook_events="everything").json()["error"]
        assert error["field"] == "webhook_events"
