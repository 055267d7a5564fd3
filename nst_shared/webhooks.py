"""Webhooks: where a job may report to (SSRF checks), how a delivery is signed, and the delivery queue.

Signatures follow the Standard Webhooks scheme: headers `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, so a receiver can verify the
body and drop replays (an old timestamp or an id it has seen).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import socket
import time
import uuid
from typing import Any, Iterable
from urllib.parse import urlsplit

EVENTS = ("completed", "status")  # completed: once, at the end; status: every status change
PENDING = "nst:webhooks:pending"  # list of deliveries ready to send
RETRY = "nst:webhooks:retry"  # sorted set: delivery -> time of its next attempt


class WebhookRefused(ValueError):
    """Raised when a webhook URL is not allowed (scheme, unresolvable host, private address)."""


def _allowed(host: str, addresses: Iterable[str], allow: Iterable[str]) -> bool:
    for entry in allow:
        entry = entry.strip()
        if not entry:
            continue
        if entry == host:
            return True
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        if all(ipaddress.ip_address(a) in network for a in addresses):
            return True
    return False


def check_url(url: str, *, allow: Iterable[str] = ()) -> list[str]:
    """The addresses `url` resolves to, if all are public, or allowed by `allow` (hosts or CIDRs).

    Called at submit time and again before every delivery (DNS may have changed since)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("the webhook must be an http or https URL with a host")
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise WebhookRefused(f"the webhook host {host!r} does not resolve") from None
    addresses = sorted({info[4][0] for info in infos})
    allow = list(allow)
    if _allowed(host, addresses, allow):
        return addresses
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if not ip.is_global or ip.is_multicast:
            raise WebhookRefused(f"the webhook host {host!r} is a private, loopback or reserved address "
                                 f"({address}); allow it with NST_WEBHOOK_ALLOW")
    return addresses


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance_s: int = 300,
           now: float | None = None) -> bool:
    """True when the signature matches and the timestamp is within `tolerance_s` of now."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        message_id, timestamp = lowered["webhook-id"], int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, s) for s in signatures)


def new_delivery(url: str, event: str, payload: dict[str, Any]) -> str:
    """A delivery as queued in Redis: JSON with its id, URL, body and attempt count."""
    return json.dumps({"id": f"msg_{uuid.uuid4().hex}", "url": url, "attempt": 0,
                       "body": {"type": f"job.{event}", **payload}})
