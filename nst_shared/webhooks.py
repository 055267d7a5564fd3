"""Webhooks, the torch-free shared part: which URLs a job may report to (SSRF checks), how a delivery is
signed and verified, the outbox's keys, and the body a delivery sends.

Signatures follow Standard Webhooks (https://www.standardwebhooks.com): headers `webhook-id`,
`webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`. The id is
signed with the timestamp and body so that a replay cannot dodge a receiver's "seen this id" check by
changing the id. A secret written `whsec_<base64>` is decoded as Standard Webhooks libraries do; any other
string is used as UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

EVENTS = ("completed", "status")  # completed: once, when the job ends; status: every status change
# The outbox. A job's transition script pushes its deliveries on PENDING; a sender moves one at a time to a
# processing list of its own and removes it there only once it is sent, given up or rescheduled on RETRY,
# so a sender that dies mid-delivery loses nothing: its list goes back to PENDING (at least once).
PENDING = "nst:webhooks:pending"  # Redis list of deliveries ready to send
RETRY = "nst:webhooks:retry"  # Redis sorted set: delivery -> time of its next attempt
SENDERS = "nst:webhooks:senders"  # set of sender ids that may hold deliveries in a processing list
TOLERANCE_S = 300  # how far a delivery's timestamp may be from the receiver's clock

Resolver = Callable[..., list[tuple[Any, ...]]]  # socket.getaddrinfo's shape


class WebhookRefused(ValueError):
    """Raised when a webhook URL may not be called: not http(s), no host, a host that does not resolve, or
    one that resolves to a private, loopback, link-local, multicast or reserved address not allowed."""

    code = "webhook_refused"


@dataclass(frozen=True)
class Target:
    """A checked webhook URL and the addresses it resolved to (connect to these, not to a new lookup)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    # is_global is False for private, loopback, link-local, reserved, unspecified and shared (100.64/10)
    # ranges; multicast addresses can be "global", so they are refused separately.
    return ip.is_global and not ip.is_multicast


def _allowed(host: str, address: str, allow: Iterable[str]) -> bool:
    ip = ipaddress.ip_address(address)
    for entry in allow:
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == host.lower():
            return True
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:  # a host name that is not this one
            continue
    return False


def check_url(url: str, *, allow: Iterable[str] = (), resolver: Resolver = socket.getaddrinfo) -> Target:
    """Resolve `url`'s host and accept it when every address is public, or allowed by `allow` (host names
    or CIDRs, e.g. `["127.0.0.1/32", "hooks.internal"]`).

    Called when a job is submitted and again before every delivery, since DNS may have changed since."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("the webhook must be an http or https URL with a host")
    if parts.username or parts.password:
        raise WebhookRefused("the webhook URL may not carry a user name or password")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookRefused("the webhook URL has an invalid port") from None
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WebhookRefused(f"the webhook host {host!r} does not resolve") from None
    addresses = tuple(sorted({str(info[4][0]).split("%")[0] for info in infos}))
    if not addresses:
        raise WebhookRefused(f"the webhook host {host!r} does not resolve")
    allow = list(allow)
    for address in addresses:
        if not _public(ipaddress.ip_address(address)) and not _allowed(host, address, allow):
            raise WebhookRefused(f"the webhook host {host!r} resolves to a private, loopback or reserved "
                                 f"address ({address}); the service's NST_WEBHOOK_ALLOW may permit it")
    return Target(url=url, scheme=parts.scheme, host=host, port=port, addresses=addresses)


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_"):], validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value of a delivery: `v1,` and the base64 HMAC-SHA256."""
    digest = hmac.new(_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The headers that go with `body`: id, timestamp (Unix seconds) and signature."""
    timestamp = int(time.time() if now is None else now)
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body)}


def signature_problem(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: float = TOLERANCE_S,
                      now: float | None = None) -> str | None:
    """Why a delivery does not verify (missing headers, too old or too new, wrong signature), or None.

    The signature header may hold several space-separated `v1,...` values (a secret being rotated)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    message_id = lowered.get("webhook-id")
    timestamp_text = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not message_id or not timestamp_text or not signatures:
        return "missing webhook-id, webhook-timestamp or webhook-signature header"
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        return "webhook-timestamp is not a number"
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return "webhook-timestamp is too far from now (a replay, or a clock out of step)"
    expected = sign(secret, message_id, timestamp, body)
    if any(hmac.compare_digest(expected, s) for s in signatures.split()):
        return None
    return "the signature does not match (another secret, or a changed body)"


def _iso(value: float | None) -> str | None:
    return datetime.fromtimestamp(value, tz=timezone.utc).isoformat() if value is not None else None


def processing_list(sender_id: str) -> str:
    """The Redis list holding the delivery a sender is working on."""
    return f"nst:webhooks:processing:{sender_id}"


def sender_alive(sender_id: str) -> str:
    """The key whose life (a TTL the sender refreshes) says the sender is still running."""
    return f"nst:webhooks:sender:{sender_id}"


def delivery_body(delivery: dict[str, Any]) -> dict[str, Any]:
    """The JSON a delivery POSTs, from its outbox entry (the message id, URL, event, time, and the job's
    record fields as the transition left them): enough to act on without another request (the full job is
    at `links.self`)."""
    record = delivery["record"]

    def number(name: str) -> float | None:
        return float(record[name]) if record.get(name) else None

    base = f"/jobs/{record['id']}"
    return {"type": f"job.{delivery['event']}", "timestamp": _iso(float(delivery["at"])),
            "job": {"id": record["id"], "status": record["status"],
                    "error": json.loads(record["error"]) if record.get("error") else None,
                    "created_at": _iso(number("created_at")), "started_at": _iso(number("started_at")),
                    "finished_at": _iso(number("finished_at")),
                    "params": json.loads(record["params"]) if record.get("params") else {},
                    "steps_done": int(record["steps_done"]) if record.get("steps_done") else None,
                    "links": {"self": base, "events": f"{base}/events", "result": f"{base}/result"}}}
