"""Redis clients from the settings: a reply that never comes (a silent network cut, here a stopped
redis-server) fails within NST_REDIS_SOCKET_TIMEOUT_S instead of waiting for the kernel's TCP retries."""

from __future__ import annotations

import signal
import time

import pytest
import redis

from nst_shared.redis_connection import connect
from nst_shared.settings import Settings
from tests.conftest import RedisServer


def test_a_silent_redis_fails_a_write_within_the_socket_timeout(tmp_path):
    server = RedisServer(tmp_path / "redis")
    try:
        client = connect(Settings(redis_url=server.url, redis_socket_timeout_s=0.5), socket_timeout_s=0.5)
        assert client.ping()
        server.process.send_signal(signal.SIGSTOP)  # the connection stays open; nothing answers
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            client.set("progress", 1)
        assert time.monotonic() - started < 5
        server.process.send_signal(signal.SIGCONT)
        assert client.ping()  # the client reconnects by itself
    finally:
        server.process.send_signal(signal.SIGCONT)
        server.stop()
