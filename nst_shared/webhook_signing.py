"""How a webhook delivery is signed and verified, as Standard Webhooks (https://www.standardwebhooks.com) says.

Headers `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
The id is signed with the timestamp and body so that a replay cannot dodge a receiver's "seen this id" check by
changing the id. A secret written `whsec_<base64>` is decoded as Standard Webhooks libraries do; any other
string is used as UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

TOLERANCE_S = 300  # how far a delivery's timestamp may be from the receiver's clock


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :], validate=True)
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
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def signature_problem(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: float = TOLERANCE_S, now: float | None = None
) -> str | None:
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
