"""Redis clients built from the settings, one way for the API, the workers and `nst up`: TLS (`rediss://`)
checked against an optional CA file, bounded connects and replies, and health checks of idle connections."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from nst_shared.settings import Settings

HEALTH_CHECK_INTERVAL_S = 10  # an idle connection is PINGed before use after this long: a dead one is replaced


def client_options(settings: Settings, *, socket_timeout_s: float | None) -> dict[str, Any]:
    """redis-py options for `settings.redis_url`: timeouts, health checks, and the CA file for rediss://."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": settings.redis_connect_timeout_s,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }
    if settings.redis_url.startswith("rediss://") and settings.redis_ca_file:
        options["ssl_ca_certs"] = settings.redis_ca_file
    return options


def connect(settings: Settings, *, socket_timeout_s: float | None, **options: Any) -> redis.Redis:
    """A client of the deployment's Redis; a reply slower than `socket_timeout_s` raises TimeoutError."""
    return redis.Redis.from_url(
        settings.redis_url, **client_options(settings, socket_timeout_s=socket_timeout_s), **options
    )


def connect_async(settings: Settings, *, socket_timeout_s: float | None, **options: Any) -> aioredis.Redis:
    """The same, for asyncio."""
    return aioredis.Redis.from_url(
        settings.redis_url, **client_options(settings, socket_timeout_s=socket_timeout_s), **options
    )


def text(value: Any) -> Any:
    """A reply's bytes as str (clients built without decode_responses); anything else as it is."""
    return value.decode() if isinstance(value, bytes) else value


def texts(data: dict[Any, Any]) -> dict[str, Any]:
    """A hash reply with its keys and values as str."""
    return {text(k): text(v) for k, v in data.items()}
