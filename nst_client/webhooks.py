"""Verify a webhook delivery from the nst service: its signature, and a timestamp recent enough that an old
delivery replayed later is refused. Remember the `webhook-id`s you processed to drop a repeated one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nst_client.errors import InvalidSignature
from nst_shared.webhook_signing import TOLERANCE_S, signature_problem  # the signing the service uses (stdlib only)

__all__ = ["TOLERANCE_S", "verify_signature", "verify_webhook"]


def verify_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: float = TOLERANCE_S, now: float | None = None
) -> dict[str, Any]:
    """The delivery's JSON (`{"type": "job.completed", "job": {...}}`) once it verifies.

    `body` must be the raw bytes received (not re-encoded JSON). Raises `InvalidSignature` saying why."""
    problem = signature_problem(secret, headers, body, tolerance_s=tolerance_s, now=now)
    if problem is not None:
        raise InvalidSignature(problem)
    delivery: dict[str, Any] = json.loads(body)
    return delivery


def verify_signature(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: float = TOLERANCE_S, now: float | None = None
) -> bool:
    """True when the delivery is signed with `secret` and its timestamp is within `tolerance_s` of now."""
    return signature_problem(secret, headers, body, tolerance_s=tolerance_s, now=now) is None
