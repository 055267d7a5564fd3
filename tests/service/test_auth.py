"""API keys: 401 without one, each job visible to its key only (404 to others), signed links for browsers."""

from __future__ import annotations

import hashlib
import io
import socket
import time

import pytest
from PIL import Image

from nst_client import NstClient
from nst_client.errors import AuthenticationError, JobNotFound
from service.auth import KeyRing, parse_api_keys
from tests.conftest import make_image, start_stack
from tests.service.sse import read_events
from tests.service.test_errors import error_of
from tests.service.test_jobs import submit, wait_status

ALPHA, BETA = "alpha-key-0123456789", "beta-key-9876543210"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, redis_server):
    stack = start_stack(
        tmp_path_factory.mktemp("keyed"),
        redis_server.url,
        engine="tests.engines:InstantEngine",
        api_keys=f'["{ALPHA}", "{BETA}"]',
        cors_origins='["https://app.example"]',
    )
    yield stack
    stack.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_parse_api_keys_json_or_commas():
    assert parse_api_keys('["a", "b"]') == ["a", "b"]
    assert parse_api_keys(" a, b ,,") == ["a", "b"]
    assert parse_api_keys("") == []


def test_signed_link_expires_and_binds_job_and_owner():
    keys = KeyRing(["k"], link_ttl_s=60)
    token = keys.sign("job1", "owner1", now=1000)
    assert keys.check(token, "job1", "owner1", now=1059) is True
    assert keys.check(token, "job1", "owner1", now=1061) is False
    assert keys.check(token, "job2", "owner1", now=1000) is None
    assert keys.check(token, "job1", "owner2", now=1000) is None
    assert keys.check("9" * 11 + token[11:], "job1", "owner1", now=1000) is None
    assert KeyRing(["other"]).check(token, "job1", "owner1", now=1000) is None
    assert keys.check("\u00b2." + token.split(".")[1], "job1", "owner1") is None  # a digit, but not ASCII


def test_jobs_need_api_key_401(keyed):
    with keyed.client() as client:
        for method, path in (
            ("GET", "/jobs"),
            ("GET", "/jobs/abc"),
            ("GET", "/jobs/abc/events"),
            ("POST", "/jobs/abc/cancel"),
            ("DELETE", "/jobs/abc"),
        ):
            response = client.request(method, path)
            assert error_of(response, 401)["code"] == "api_key_required", path
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert error_of(submit(client), 401)["code"] == "api_key_required"
        wrong = client.get("/jobs", headers=bearer("not-a-key"))
        assert error_of(wrong, 401)["code"] == "invalid_api_key"
        assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
        for open_path in ("/healthz", "/", "/docs", "/openapi.json", "/api/config"):
            assert client.get(open_path).status_code == 200, open_path


def test_missing_key_refused_before_the_body_is_read(keyed):
    # Headers announcing a 10 MB upload, and no body at all: the 401 must come without waiting for it.
    port = int(keyed.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 10000000\r\n\r\n"
        )
        answer = b""
        while b"}}" not in answer:  # the headers and the JSON body may come in separate packets
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401") and b"api_key_required" in answer


def test_job_of_another_key_404(keyed):
    with keyed.client() as client:
        job = submit(client, headers=bearer(ALPHA)).json()
        wait_status(client_for(keyed, ALPHA), job["id"], {"succeeded"})
        job_id = job["id"]
        for method, path in (
            ("GET", ""),
            ("GET", "/events"),
            ("GET", "/result"),
            ("GET", "/preview"),
            ("POST", "/cancel"),
            ("DELETE", ""),
        ):
            other = client.request(method, f"/jobs/{job_id}{path}", headers=bearer(BETA))
            assert error_of(other, 404)["code"] == "job_not_found", path
        assert client.get(f"/jobs/{job_id}", headers={"X-API-Key": ALPHA}).status_code == 200
        mine = client.get("/jobs", params={"limit": 100}, headers=bearer(ALPHA)).json()
        theirs = client.get("/jobs", params={"limit": 100}, headers=bearer(BETA)).json()
        assert job_id in [j["id"] for j in mine["items"]]
        assert job_id not in [j["id"] for j in theirs["items"]] and theirs["total"] == 0
        stored = keyed_redis(keyed).hgetall(f"nst:job:{job_id}")
        assert stored[b"owner"].decode() == hashlib.sha256(ALPHA.encode()).hexdigest()
        assert not any(ALPHA.encode() in value for value in stored.values())


def test_idempotency_key_is_per_api_key(keyed):
    with keyed.client() as client:
        first = submit(client, headers={**bearer(ALPHA), "Idempotency-Key": "same"})
        second = submit(client, headers={**bearer(BETA), "Idempotency-Key": "same"})
        assert first.status_code == second.status_code == 202
        assert first.json()["id"] != second.json()["id"]


def test_signed_links_open_events_result_and_preview(keyed):
    with keyed.client() as client:
        job = submit(client, headers=bearer(ALPHA)).json()
        links = job["links"]
        assert "token=" in links["events"] and "token=" in links["result"] and "token=" not in links["self"]
        with client.stream("GET", links["events"]) as stream:  # no key: the link's token is enough
            assert stream.status_code == 200
            events = list(read_events(stream))
        assert events[-1][1] == "completed" and events[-1][2]["status"] == "succeeded"
        preview_urls = [d["url"] for _, kind, d in events if kind == "preview"]
        assert preview_urls and all("token=" in url for url in preview_urls)
        assert client.get(preview_urls[-1]).status_code == 200
        result = client.get(events[-1][2]["links"]["result"])
        assert result.status_code == 200 and Image.open(io.BytesIO(result.content)).format == "PNG"
        # A link opens only its own job, and only the read-only URLs.
        other = submit(client, headers=bearer(ALPHA)).json()
        token = links["result"].split("token=")[1]
        assert client.get(f"/jobs/{other['id']}/result?token={token}").status_code == 404
        assert client.get(f"/jobs/{job['id']}/result?token={token[:-2]}xx").status_code == 404
        assert client.get(f"/jobs/{job['id']}?token={token}").status_code == 401
        assert client.post(f"/jobs/{job['id']}/cancel?token={token}").status_code == 401


def test_client_sends_api_key(keyed):
    with NstClient(keyed.url, api_key=BETA) as nst:
        job = nst.submit(make_image(80, 60, seed=1), [make_image(64, 64, seed=2)], max_size=64, steps=3)
        assert nst.wait(job.id, timeout_s=60).status == "succeeded"
        assert nst.result(job.id)[:8] == b"\x89PNG\r\n\x1a\n"
    with NstClient(keyed.url, api_key=ALPHA) as nst, pytest.raises(JobNotFound):
        nst.get(job.id)
    with NstClient(keyed.url) as nst, pytest.raises(AuthenticationError):
        nst.list_jobs()


def test_nst_submit_sends_api_key(keyed, tmp_path):
    from tests.client.test_cli import nst

    content, style = tmp_path / "content.png", tmp_path / "style.png"
    content.write_bytes(make_image(80, 60, seed=4))
    style.write_bytes(make_image(64, 64, seed=5))
    out = tmp_path / "out.png"
    done = nst(
        "submit",
        str(content),
        str(style),
        "--max_size",
        "64",
        "--steps",
        "3",
        "--wait",
        "--output",
        str(out),
        "--server",
        keyed.url,
        env={"NST_API_KEY": ALPHA},
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"
    refused = nst("submit", str(content), str(style), "--server", keyed.url, "--api-key", "wrong")
    assert refused.returncode == 2 and "API key" in refused.stderr
    job_id = done.stdout.strip().splitlines()[0]
    assert nst("status", job_id, "--server", keyed.url, env={"NST_API_KEY": BETA}).returncode == 6


def test_cors_only_for_configured_origins(keyed, service):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    with keyed.client() as client:
        allowed = client.options("/jobs", headers={"Origin": "https://app.example", **preflight})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        other = client.options("/jobs", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers
        answer = client.get("/jobs", headers={"Origin": "https://app.example", **bearer(ALPHA)})
        assert "Retry-After" in answer.headers["access-control-expose-headers"]
    with service.client() as client:  # CORS is off by default
        response = client.get("/jobs", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in response.headers


def client_for(stack, key: str):
    return stack.client(headers=bearer(key))


def keyed_redis(stack):
    import redis

    return redis.Redis.from_url(stack.redis_url)


def test_failed_key_attempts_are_limited_per_client_address(tmp_path, redis_server):
    stack = start_stack(
        tmp_path, redis_server.url, workers=0, api_keys=f'["{ALPHA}"]', rate_limit_auth_failures_per_min=3
    )
    try:
        with stack.client() as client:
            spoofed = [{**bearer(f"guess-{i}"), "X-Forwarded-For": f"198.51.100.{i}"} for i in range(5)]
            answers = [client.get("/jobs", headers=headers).status_code for headers in spoofed]
            assert answers == [401, 401, 401, 429, 429]  # a forged X-Forwarded-For changes nothing
            locked = client.get("/jobs", headers=bearer(ALPHA))
            assert error_of(locked, 429)["code"] == "auth_rate_limited"  # refused before any key is checked
            assert 1 <= int(locked.headers["Retry-After"]) <= 60
            # The operator is told once that a proxy in front is not trusted (every client shares its address).
            warnings = [
                line for line in (stack.log_dir / "api.log").read_text().splitlines() if "NST_TRUSTED_PROXIES" in line
            ]
            assert len(warnings) == 1 and '"WARNING"' in warnings[0]
    finally:
        stack.stop()


def test_failed_key_attempts_count_the_address_a_trusted_proxy_names(tmp_path, redis_server):
    stack = start_stack(
        tmp_path,
        redis_server.url,
        workers=0,
        api_keys=f'["{ALPHA}"]',
        rate_limit_auth_failures_per_min=2,
        trusted_proxies='["127.0.0.1/32"]',
    )
    try:
        with stack.client() as client:

            def attempt(key: str, address: str) -> int:
                headers = {**bearer(key), "X-Forwarded-For": f"{address}, 127.0.0.1"}
                return client.get("/jobs", headers=headers).status_code

            assert [attempt("guess", "203.0.113.7") for _ in range(3)] == [401, 401, 429]
            assert attempt(ALPHA, "203.0.113.8") == 200  # another client behind the same proxy
            assert attempt("guess", "203.0.113.8") == 401
            assert "NST_TRUSTED_PROXIES" not in (stack.log_dir / "api.log").read_text()  # trusted: no warning
    finally:
        stack.stop()


def test_readyz_tells_strangers_ready_or_not_and_no_more(keyed):
    with keyed.client() as client:
        anonymous = client.get("/readyz")
        assert anonymous.status_code == 200 and anonymous.json() == {"status": "ready"}
        wrong = client.get("/readyz", headers=bearer("not-a-key-at-all-000"))
        assert wrong.json() == {"status": "ready"}
        # Who may read /metrics (here: any API key, as no metrics token is set) sees every worker.
        detailed = client.get("/readyz", headers=bearer(ALPHA)).json()
        assert detailed["workers"] == 1 and detailed["engines"][0]["device"] == "cpu"


def test_a_304_never_leaves_a_client_with_an_expired_link(tmp_path, redis_server):
    # Links live 4 s here: a client polling an unchanged job with If-None-Match for longer than that must get a
    # fresh link (a 200) before the one it holds expires.
    stack = start_stack(tmp_path, redis_server.url, api_keys=f'["{ALPHA}"]', link_ttl_s=4)
    try:
        with stack.client(headers=bearer(ALPHA)) as client:
            job = submit(client).json()
            wait_status(client, job["id"], {"succeeded"})
            first = client.get(f"/jobs/{job['id']}")
            etag, expires = first.headers["ETag"], int(first.json()["links"]["result"].split("token=")[1].split(".")[0])
            fresh = 0
            deadline = time.time() + 10
            while time.time() < deadline:
                response = client.get(f"/jobs/{job['id']}", headers={"If-None-Match": etag})
                if response.status_code == 304:
                    assert time.time() < expires, "a 304 kept an expired link"
                else:
                    assert response.status_code == 200
                    etag = response.headers["ETag"]
                    expires = int(response.json()["links"]["result"].split("token=")[1].split(".")[0])
                    fresh += 1
                time.sleep(0.2)
            assert fresh >= 2
    finally:
        stack.stop()
