"""API keys and signed links: who is calling, which jobs are theirs, and links a browser can open.

Keys are never stored: a job record carries its owner as the SHA-256 of the key that made it. Browsers
cannot set headers on EventSource, <img> or download links, so those three job URLs also accept
`?token=`, an HMAC over (job id, owner, expiry) that opens that one job's read-only URLs until it expires;
the key itself never goes into a URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from nst_shared.jobs import JobRecord
from nst_shared.settings import Settings
from nst_shared.sweeps import SweepRecord
from service.errors import ApiError, not_found

TOKEN_PARAM = "token"


def parse_api_keys(raw: str) -> list[str]:
    """`NST_API_KEYS` as a list: a JSON list, or comma-separated."""
    raw = raw.strip()
    if not raw:
        return []
    keys = json.loads(raw) if raw.startswith("[") else raw.split(",")
    return [str(k).strip() for k in keys if str(k).strip()]


def owner_of(key: str) -> str:
    """What a job record stores for the key that made it."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """The accepted keys, held as hashes; `owner` compares in constant time."""

    def __init__(self, keys: list[str], *, link_secret: str = "", link_ttl_s: int = 3600) -> None:
        self.owners = [owner_of(k) for k in keys]
        # Every API process derives the same secret from the same keys, so links work across processes.
        secret = link_secret or ("nst-links\0" + "\0".join(sorted(keys)))
        self._secret = hashlib.sha256(secret.encode()).digest()
        self.link_ttl_s = link_ttl_s

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(parse_api_keys(settings.api_keys), link_secret=settings.link_secret, link_ttl_s=settings.link_ttl_s)

    @property
    def enabled(self) -> bool:
        return bool(self.owners)

    def owner(self, key: str) -> str | None:
        """The owner hash of an accepted key, else None; every known key is compared, always."""
        candidate = owner_of(key)
        found = None
        for owner in self.owners:
            if hmac.compare_digest(owner, candidate):
                found = owner
        return found

    def sign(self, job_id: str, owner: str, *, now: float | None = None) -> str:
        """A token opening this job's events, result and preview until `link_ttl_s` from now."""
        expires = int((now if now is not None else time.time()) + self.link_ttl_s)
        return f"{expires}.{self._mac(job_id, owner, expires)}"

    def link_period(self, *, now: float | None = None) -> int:
        """Which half of a link's life `now` is in: an ETag that carries it changes before a link handed out
        with the last full answer expires, so a 304 never leaves a client holding an expired link."""
        return int((now if now is not None else time.time()) // max(1, self.link_ttl_s // 2))

    def check(self, token: str, job_id: str, owner: str, *, now: float | None = None) -> bool | None:
        """True for a valid token, False when it was valid but has expired, None when it is not ours."""
        expires_text, _, mac = token.partition(".")
        if not (expires_text.isascii() and expires_text.isdigit()) or len(expires_text) > 12:
            return None
        if not hmac.compare_digest(mac, self._mac(job_id, owner, int(expires_text))):
            return None
        return int(expires_text) >= (now if now is not None else time.time())

    def _mac(self, job_id: str, owner: str, expires: int) -> str:
        digest = hmac.new(self._secret, f"{job_id}\0{owner}\0{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


@dataclass(frozen=True)
class Caller:
    """Who is asking: the owner hash of their key (None when keys are off, or for a signed link), the
    identity rate limits count against, and the link token they brought, if any."""

    owner: str | None
    identity: str
    token: str | None = None

    def holder(self, record: JobRecord | SweepRecord) -> str:
        """Whose place an open event stream or a `Prefer: wait` takes: the record's key's (a signed link's
        requests count with their key's), else this caller's."""
        return f"key:{record.owner}" if record.owner else self.identity

    def may_read(self, record: JobRecord | SweepRecord, keys: KeyRing) -> None:
        """404 unless this caller owns the job or sweep (or brought a valid link for it); 401 for an expired
        link."""
        if not keys.enabled:
            return
        if self.owner is not None:
            if not hmac.compare_digest(self.owner, record.owner or ""):
                raise not_found(record.id)
            return
        valid = keys.check(self.token or "", record.id, record.owner or "")
        if valid is None:
            raise not_found(record.id)
        if valid is False:
            raise ApiError(
                401,
                "link_expired",
                "this link has expired; get the job again for fresh links",
                headers={"WWW-Authenticate": 'Bearer realm="nst", error="invalid_token"'},
            )


async def get_keys(request: Request) -> KeyRing:
    return cast(KeyRing, request.app.state.keys)  # Starlette's app.state holds Any


def client_ip(request: Request) -> str:
    """The client's address: the peer's, or the one a trusted proxy names (NST_TRUSTED_PROXIES, applied by
    uvicorn's ProxyHeadersMiddleware in create_app; uvicorn itself runs with --no-proxy-headers)."""
    return request.client.host if request.client else "unknown"


def presented_key(request: Request) -> str | None:
    """The key a request brings: `Authorization: Bearer <key>` or `X-API-Key`; None without one."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


def authenticate(request: Request, *, links: bool) -> Caller:
    """Who is calling (see `Caller`); 401 when keys are on and none (nor, with `links`, a token) came."""
    keys: KeyRing = request.app.state.keys
    if not keys.enabled:
        return Caller(owner=None, identity=f"ip:{client_ip(request)}")
    key = presented_key(request)
    if key is None:
        token = request.query_params.get(TOKEN_PARAM) if links else None
        if token:
            return Caller(owner=None, identity=f"ip:{client_ip(request)}", token=token)
        raise ApiError(
            401,
            "api_key_required",
            "this service needs an API key: send Authorization: Bearer <key> or X-API-Key",
            headers={"WWW-Authenticate": 'Bearer realm="nst"'},
        )
    owner = keys.owner(key)
    if owner is None:
        raise ApiError(
            401,
            "invalid_api_key",
            "the API key is not accepted",
            headers={"WWW-Authenticate": 'Bearer realm="nst", error="invalid_token"'},
        )
    return Caller(owner=owner, identity=f"key:{owner[:32]}")


# Declared for the OpenAPI page (its Authorize button); the key is read from the request either way.
_BEARER = HTTPBearer(auto_error=False, description="An API key from NST_API_KEYS (when the service has keys).")
_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same API key, as a header.")


async def key_caller(
    request: Request, _bearer: Annotated[object, Depends(_BEARER)], _header: Annotated[object, Depends(_HEADER)]
) -> Caller:
    """The caller of a route that needs the API key itself (when keys are on)."""
    return authenticate(request, links=False)


async def link_caller(
    request: Request,
    _bearer: Annotated[object, Depends(_BEARER)],
    _header: Annotated[object, Depends(_HEADER)],
    token: Annotated[
        str | None,
        Query(max_length=200, description="A signed link from the job's links, instead of the key (for browsers)."),
    ] = None,
) -> Caller:
    """The caller of a read-only route a browser opens by URL: the key, or a signed link (`?token=`)."""
    return authenticate(request, links=True)


KeysDep = Annotated[KeyRing, Depends(get_keys)]
KeyCallerDep = Annotated[Caller, Depends(key_caller)]
LinkCallerDep = Annotated[Caller, Depends(link_caller)]
