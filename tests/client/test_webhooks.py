"""Webhooks: signing and verification, the SSRF checks, the sender's retries and its re-check at delivery,
and end to end against the real service with a receiver on loopback allowed by NST_WEBHOOK_ALLOW."""

from __future__ import annotations

import base64
import json
import signal
import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
import redis

from nst_client import InvalidRequest, InvalidSignature, NstClient
from nst_client.webhooks import verify_signature, verify_webhook
from nst_shared.jobs import JobStatus, JobStore, new_job_id
from nst_shared.settings import Settings
from nst_shared.webhook_outbox import PENDING, RETRY, delivery_body
from nst_shared.webhook_progress import ProgressDeliveries
from nst_shared.webhook_signing import sign, signed_headers
from nst_shared.webhook_urls import WebhookRefused, check_url
from tests.conftest import make_image, next_database_url, start_stack, wait_until
from worker.webhook_delivery import WebhookSender

SECRET = "s3cret-for-tests"


class Receiver:
    """A loopback HTTP server that records deliveries and answers 500 to the first `fail_first`."""

    def __init__(self, fail_first: int = 0) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                status = 500 if len(receiver.deliveries) < fail_first else 204
                receiver.deliveries.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def resolver_to(address: str):
    """A getaddrinfo stand-in that resolves every host to `address` (DNS we control)."""

    def resolve(host, port, **_):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


# Signing and verification: no service needed.


def test_sign_matches_the_standard_webhooks_test_vector():
    # Published by Standard Webhooks: receivers using their libraries verify what we send.
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_standard_webhooks_library_and_ours_verify_each_other():
    # The maintained implementation (the `standardwebhooks` package) accepts what the workers send, and our
    # verification accepts what it signs: the two agree beyond the one published vector.
    from standardwebhooks import Webhook

    secret = "whsec_" + base64.b64encode(b"a 24-byte shared secret!").decode()
    body = json.dumps({"type": "job.completed", "job": {"id": "j1", "status": "succeeded"}}).encode()
    headers = signed_headers(secret, "msg_interop", body)
    assert Webhook(secret).verify(body, headers)["job"]["id"] == "j1"
    now = datetime.now(tz=UTC)
    theirs = {
        "webhook-id": "msg_theirs",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_theirs", now, body.decode()),
    }
    assert verify_webhook(secret, theirs, body)["job"]["status"] == "succeeded"


def test_verify_refuses_tampering_other_secrets_and_replays():
    body = b'{"type":"job.completed","job":{"id":"j1"}}'
    headers = signed_headers(SECRET, "msg_1", body, now=1_000_000)
    assert verify_webhook(SECRET, headers, body, now=1_000_010)["job"]["id"] == "j1"
    assert verify_signature(SECRET, {k.upper(): v for k, v in headers.items()}, body, now=1_000_010)
    assert not verify_signature("another", headers, body, now=1_000_010)
    assert not verify_signature(SECRET, headers, body + b" ", now=1_000_010)
    assert not verify_signature(SECRET, {**headers, "webhook-id": "msg_2"}, body, now=1_000_010)
    with pytest.raises(InvalidSignature, match="too far"):
        verify_webhook(SECRET, headers, body, now=1_000_000 + 3600)  # replayed an hour later
    with pytest.raises(InvalidSignature, match="missing"):
        verify_webhook(SECRET, {"webhook-id": "msg_1"}, body, now=1_000_000)
    rotated = {**headers, "webhook-signature": "v1,bm9wZQ== " + headers["webhook-signature"]}
    assert verify_signature(SECRET, rotated, body, now=1_000_000)


# The SSRF check.


def test_webhook_progress_events_arrive_while_the_job_runs(hook_stack):
    receiver = Receiver()
    try:
        with NstClient(hook_stack.url) as client:
            job = client.submit(*_images(), max_size=64, steps=4, webhook_url=receiver.url, webhook_events=["progress"])
            client.wait(job.id, timeout_s=120)
        wait_until(lambda: receiver.deliveries, timeout_s=30, what="a progress delivery")
        time.sleep(1)  # nothing else may follow: one interval (60 s) is longer than the whole job
        bodies = [verify_webhook(SECRET, h, b) for h, b, _ in receiver.deliveries]
        assert [b["type"] for b in bodies] == ["job.progress"]
        assert bodies[0]["job"]["progress"]["step"] == 1 and bodies[0]["job"]["progress"]["steps"] == 4
    finally:
        receiver.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00::1]/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "ftp://8.8.8.8/",
        "http:///nohost",
        "http://user:pw@8.8.8.8/",
    ],
)
def test_check_url_refuses(url):
    with pytest.raises(WebhookRefused):
        check_url(url)


def test_check_url_accepts_public_and_allowed_addresses():
    assert check_url("https://8.8.8.8/hook").addresses == ("8.8.8.8",)
    assert check_url("http://127.0.0.1:9000/", allow=["127.0.0.1/32"]).port == 9000
    assert check_url("http://hooks.internal/", allow=["hooks.internal"], resolver=resolver_to("10.0.0.7"))
    with pytest.raises(WebhookRefused):  # a host name that resolves to a private address
        check_url("http://hooks.example/", resolver=resolver_to("10.0.0.7"))
    with pytest.raises(WebhookRefused):  # the allow-list names another network
        check_url("http://127.0.0.1/", allow=["10.0.0.0/8", "other.host"])


# The sender, with Redis and a receiver of its own.


@pytest.fixture
def hooks_redis(redis_server):
    connection = redis.Redis.from_url(next_database_url(redis_server.url))
    yield connection
    connection.flushdb()


def outbox_entry(connection: redis.Redis, url: str) -> dict:
    """A delivery as a job's own transition writes it: a job with a webhook, run to success in the store."""
    store = JobStore(connection, ttl_s=60)
    job_id = new_job_id()
    store.create(job_id, params={"steps": 1}, styles=1, extra={"webhook": {"url": url, "events": ["completed"]}})
    store.transition(job_id, JobStatus.RUNNING, allowed={JobStatus.QUEUED})
    store.transition(job_id, JobStatus.SUCCEEDED, allowed={JobStatus.RUNNING})
    assert connection.llen(PENDING) == 1
    return json.loads(connection.rpop(PENDING))


def test_sender_retries_with_doubling_delays_then_gives_up(hooks_redis):
    now = [1000.0]
    calls = []
    transport = httpx.MockTransport(lambda request: calls.append(request) or httpx.Response(503))
    settings = Settings(webhook_secret=SECRET, webhook_max_attempts=3, webhook_backoff_s=2.0)
    sender = WebhookSender(hooks_redis, settings, clock=lambda: now[0], transport=transport)
    delivery = outbox_entry(hooks_redis, "https://8.8.8.8/hook")
    delays = []
    for _ in range(3):
        assert sender.deliver(delivery) is False
        scheduled = hooks_redis.zrange(RETRY, 0, -1, withscores=True)
        if scheduled:
            raw, at = scheduled[0]
            delays.append(at - now[0])
            hooks_redis.zrem(RETRY, raw)
            delivery = json.loads(raw)
    assert delays == [2.0, 4.0] and len(calls) == 3  # attempts 2 and 3, then given up
    assert {c.headers["webhook-id"] for c in calls} == {delivery["id"]}  # one message, several attempts
    assert verify_signature(SECRET, dict(calls[0].headers), calls[0].content, now=now[0])


def test_sender_pins_the_checked_address_and_rechecks_at_delivery(hooks_redis):
    receiver = Receiver()
    try:
        url = f"http://hooks.example:{receiver.port}/hook"
        settings = Settings(webhook_secret=SECRET, webhook_allow=["127.0.0.1/32"])
        delivery = outbox_entry(hooks_redis, url)
        # DNS says loopback (allowed): the POST goes to the address the check resolved, naming the host.
        assert WebhookSender(hooks_redis, settings, resolver=resolver_to("127.0.0.1")).deliver(delivery)
        headers, body, _ = receiver.deliveries[0]
        assert headers["Host"] == f"hooks.example:{receiver.port}"
        assert verify_webhook(SECRET, headers, body)["job"]["id"] == delivery["record"]["id"]
        # Later the name points at a private address (DNS rebinding): refused, not sent, not retried.
        rebound = WebhookSender(hooks_redis, settings, resolver=resolver_to("10.0.0.5"))
        assert rebound.deliver(delivery) is False
        assert len(receiver.deliveries) == 1 and hooks_redis.zcard(RETRY) == 0
    finally:
        receiver.close()


def test_progress_deliveries_keep_their_pace_per_job_across_workers(hooks_redis):
    store = JobStore(hooks_redis, ttl_s=60)
    job_id = new_job_id()
    hook = {"url": "https://8.8.8.8/hook", "events": ["progress", "completed"]}
    store.create(job_id, params={"steps": 9}, styles=1, extra={"webhook": hook})
    first = ProgressDeliveries.for_job(store, job_id, {"webhook": hook}, interval_s=0.5)
    assert not first.offer({"step": 1})  # queued, not running: nothing to report
    store.transition(job_id, JobStatus.RUNNING, allowed={JobStatus.QUEUED})
    assert first.offer({"step": 2}) and not first.offer({"step": 3})  # this worker's own pace
    # Another worker (the job requeued) meets the job's gate in Redis.
    second = ProgressDeliveries.for_job(store, job_id, {"webhook": hook}, interval_s=0.5)
    assert not second.offer({"step": 4})
    wait_until(lambda: second.offer({"step": 5}), timeout_s=5, interval_s=0.05, what="the next interval")
    deliveries = [json.loads(raw) for raw in reversed(hooks_redis.lrange(PENDING, 0, -1))]
    assert [d["progress"]["step"] for d in deliveries] == [2, 5]
    body = delivery_body(deliveries[0])
    assert body["type"] == "job.progress" and body["job"]["progress"] == {"step": 2}
    assert body["job"]["status"] == "running" and len({d["id"] for d in deliveries}) == 2
    # A job that did not ask for progress events has none.
    quiet = ProgressDeliveries.for_job(store, job_id, {"webhook": {**hook, "events": ["completed"]}}, interval_s=0)
    assert not quiet.offer({"step": 6})


class RawReceiver:
    """A loopback TCP server that reads a request's head and answers with `answer(connection)`: for receivers
    that misbehave below HTTP (trickling, endless)."""

    def __init__(self, answer) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.answer = answer
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            connection.recv(65536)
            self.answer(connection, self.closed)
        except OSError:
            pass
        finally:
            connection.close()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()


def endless_body(connection: socket.socket, closed: threading.Event) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
    chunk = b"x" * 65536
    while not closed.is_set():
        connection.sendall(chunk)


def trickled_head(connection: socket.socket, closed: threading.Event) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 1000:
        if closed.is_set():
            return
        connection.sendall(bytes([byte]))
        time.sleep(0.2)


def deliver_within(sender: WebhookSender, delivery: dict, timeout_s: float) -> bool | None:
    """The sender's answer, or None when it did not answer within `timeout_s` (the thread is left behind)."""
    outcome: list[bool] = []
    thread = threading.Thread(target=lambda: outcome.append(sender.deliver(delivery)), daemon=True)
    thread.start()
    thread.join(timeout_s)
    return outcome[0] if outcome else None


def test_sender_reads_no_body_of_an_endless_answer(hooks_redis):
    receiver = RawReceiver(endless_body)
    try:
        settings = Settings(webhook_secret=SECRET, webhook_allow=["127.0.0.1/32"], webhook_timeout_s=5)
        delivery = outbox_entry(hooks_redis, receiver.url)
        assert deliver_within(WebhookSender(hooks_redis, settings), delivery, timeout_s=20) is True
    finally:
        receiver.close()


def test_sender_gives_up_a_trickling_receiver_at_the_delivery_timeout(hooks_redis):
    receiver = RawReceiver(trickled_head)
    try:
        settings = Settings(webhook_secret=SECRET, webhook_allow=["127.0.0.1/32"], webhook_timeout_s=1)
        delivery = outbox_entry(hooks_redis, receiver.url)
        started = time.monotonic()
        assert deliver_within(WebhookSender(hooks_redis, settings), delivery, timeout_s=20) is False
        assert time.monotonic() - started < 10  # one byte every 0.2 s never trips a per-read timeout
        assert hooks_redis.zcard(RETRY) == 1  # tried again later, as any failure
    finally:
        receiver.close()


# End to end: the API, a worker with its sender thread, a receiver on loopback.


@pytest.fixture(scope="module")
def hook_stack(tmp_path_factory, redis_server):
    stack = start_stack(
        tmp_path_factory.mktemp("hooks"),
        redis_server.url,
        webhook_secret=SECRET,
        webhook_allow='["127.0.0.1/32"]',
        webhook_backoff_s=0.5,
        webhook_progress_interval_s=60,  # longer than any job here, however loaded the machine
    )
    yield stack
    stack.stop()


def _images() -> tuple[bytes, bytes]:
    return make_image(80, 60, seed=7), make_image(64, 64, seed=8)


def test_webhook_delivery_is_signed_and_retried_after_a_failure(hook_stack):
    receiver = Receiver(fail_first=1)
    try:
        with NstClient(hook_stack.url) as client:
            job = client.submit(*_images(), max_size=64, steps=3, webhook_url=receiver.url)
            assert client.wait(job.id, timeout_s=120).status == "succeeded"
        wait_until(lambda: len(receiver.deliveries) >= 2, timeout_s=30, what="the retried delivery")
        (first_headers, _, first_status), (headers, body, status) = receiver.deliveries[:2]
        assert (first_status, status) == (500, 204)
        assert first_headers["webhook-id"] == headers["webhook-id"]  # the same message, retried
        delivered = verify_webhook(SECRET, headers, body)
        assert delivered["type"] == "job.completed"
        assert delivered["job"]["id"] == job.id and delivered["job"]["status"] == "succeeded"
        assert delivered["job"]["steps_done"] == 3
        assert not verify_signature("wrong secret", headers, body)
    finally:
        receiver.close()


def test_webhook_status_events_follow_every_change(hook_stack):
    receiver = Receiver()
    try:
        with NstClient(hook_stack.url) as client:
            job = client.submit(
                *_images(), max_size=64, steps=2, webhook_url=receiver.url, webhook_events=["status", "completed"]
            )
            client.wait(job.id, timeout_s=120)
        wait_until(lambda: len(receiver.deliveries) >= 3, timeout_s=30, what="three deliveries")
        bodies = [verify_webhook(SECRET, h, b) for h, b, _ in receiver.deliveries]
        kinds = sorted((b["type"], b["job"]["status"]) for b in bodies)
        assert kinds == [("job.completed", "succeeded"), ("job.status", "running"), ("job.status", "succeeded")]
    finally:
        receiver.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest",
        "http://[::1]:8080/",
        "http://192.168.0.10/",
        "http://127.0.0.2/",
        "ftp://example.org/x",
    ],
)
def test_submit_refuses_webhooks_to_private_addresses(hook_stack, url):
    with NstClient(hook_stack.url) as client, pytest.raises(InvalidRequest) as refused:
        client.submit(*_images(), max_size=64, steps=2, webhook_url=url)
    assert refused.value.status == 422 and refused.value.code == "webhook_refused"
    assert refused.value.field == "webhook_url"


def test_submit_refuses_unknown_webhook_events_and_webhooks_without_a_secret(hook_stack, service):
    with NstClient(hook_stack.url) as client, pytest.raises(InvalidRequest) as bad_events:
        client.submit(*_images(), webhook_url="http://127.0.0.1:9/x", webhook_events=["everything"])
    assert bad_events.value.field == "webhook_events"
    # The session's stack has no NST_WEBHOOK_SECRET.
    with NstClient(service.url) as client, pytest.raises(InvalidRequest) as disabled:
        client.submit(*_images(), webhook_url="https://8.8.8.8/hook")
    assert disabled.value.code == "webhooks_disabled" and disabled.value.field == "webhook_url"


class HoldingReceiver(Receiver):
    """Records each delivery as it arrives, then holds the first one `hold_s` before answering 204."""

    def __init__(self, hold_s: float) -> None:
        self.arrived: list[dict[str, str]] = []
        receiver = self
        super().__init__()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["content-length"]))
                receiver.arrived.append(dict(self.headers))
                if len(receiver.arrived) == 1:
                    time.sleep(hold_s)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server.RequestHandlerClass = Handler


def test_delivery_in_flight_when_its_worker_dies_is_sent_again(tmp_path, redis_server):
    stack = start_stack(
        tmp_path,
        redis_server.url,
        webhook_secret=SECRET,
        webhook_allow='["127.0.0.1/32"]',
        webhook_timeout_s=5,
        heartbeat_interval_s=0.5,
        heartbeat_ttl_s=2,
        engine="tests.engines:InstantEngine",
    )
    receiver = HoldingReceiver(hold_s=4)
    try:
        with NstClient(stack.url) as client:
            job = client.submit(*_images(), max_size=64, steps=2, webhook_url=receiver.url)
            wait_until(lambda: receiver.arrived, timeout_s=60, what="the first attempt")
            stack.workers[0].send_signal(signal.SIGKILL)  # while the receiver holds the delivery
            stack.workers[0].wait(10)  # dead before the next one counts the live workers
            stack.start_worker()
            wait_until(lambda: len(receiver.arrived) >= 2, timeout_s=30, what="the delivery sent again")
            assert client.get(job.id).status == "succeeded"
        first, again = receiver.arrived[:2]
        assert first["webhook-id"] == again["webhook-id"]  # the same message: receivers drop the repeat
    finally:
        receiver.close()
        stack.stop()
