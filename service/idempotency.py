"""Idempotency-Key claims, for jobs and sweeps alike: a request owns its key under a short lease until what it
makes exists, a retry meanwhile waits for it (or takes over a dead one's), and a repeat finds what was made."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis

from service.errors import ApiError

# A claim lives this long until what it names exists (then as long as that): a request that crashed in between
# leaves the key free again after it, not after NST_RESULT_TTL_S. Renewed after each file stored.
CLAIM_LEASE_S = 30.0
# KEYS[1] the claim; ARGV: its value while pending, the lease in ms. 1 when it was still ours and is renewed.
_RENEW_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

Made = TypeVar("Made")


@dataclass(frozen=True)
class Claim:
    """An Idempotency-Key's Redis key and what it names: pending while it is being made, made once it exists."""

    key: str
    id_field: str  # "job_id", "sweep_id": what the claim names
    made_id: str
    body_hash: str

    def pending(self) -> str:
        return json.dumps({self.id_field: self.made_id, "hash": self.body_hash})

    def made(self) -> str:
        return json.dumps({self.id_field: self.made_id, "hash": self.body_hash, "made": True})


class ClaimLost(Exception):
    """Raised when a request's claim is no longer its own (its lease ran out and a retry took the key over)."""


class Claims(Generic[Made]):
    """One kind of thing's Idempotency-Key claims. Each method takes the claim as `claim()` returned it: None when
    the request came without a key, and then it does nothing."""

    def __init__(
        self,
        connection: redis.Redis,
        *,
        key_of: Callable[[str], str],
        id_field: str,
        find: Callable[[str], Made | None],
        gone: Callable[[str], ApiError],
        lease_s: float,
        made_ttl_s: int,
    ) -> None:
        self.redis, self.key_of, self.id_field, self.find, self.gone = connection, key_of, id_field, find, gone
        self.lease_ms, self.made_ttl_s = int(lease_s * 1000), made_ttl_s

    def claim(
        self, *, owner: str | None, idempotency_key: str, made_id: str, body_hash: str
    ) -> tuple[Claim | None, Made | None]:
        """(our claim, None) when this request owns the key; (None, the earlier one) when the same body came
        before; 422 when the key came with another body. A claim still being made is waited for; one whose
        request died (its lease ran out with nothing made) is taken over. Keys are per caller."""
        digest = hashlib.sha256(f"{owner or ''}:{idempotency_key}".encode()).hexdigest()
        claim = Claim(self.key_of(digest), self.id_field, made_id, body_hash)
        while True:
            if self.redis.set(claim.key, claim.pending(), nx=True, px=self.lease_ms):
                return claim, None
            earlier = json.loads(self.redis.get(claim.key) or "null")
            if earlier is None:  # its lease ran out just now: try again
                continue
            if earlier.get("hash") != body_hash:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request",
                    field="Idempotency-Key",
                )
            found = self.find(earlier[self.id_field])
            if found is not None:
                return None, found
            if earlier.get("made"):  # deleted or expired since
                raise self.gone(earlier[self.id_field])
            time.sleep(0.05)  # the first request is still storing its files (or its lease runs out)

    def renew(self, claim: Claim | None) -> None:
        """Extend the claim's lease while it is this request's; ClaimLost when a retry took it over."""
        if claim is not None and not self.redis.eval(_RENEW_CLAIM, 1, claim.key, claim.pending(), self.lease_ms):
            raise ClaimLost()

    def watch(self, pipe: Any, claim: Claim | None) -> None:
        """WATCH the claim on `pipe` (before its MULTI); ClaimLost when it is no longer this request's."""
        if claim is None:
            return
        pipe.watch(claim.key)
        current = json.loads(pipe.get(claim.key) or "null")
        if current is None or current.get(self.id_field) != claim.made_id:
            raise ClaimLost()

    def make_in(self, pipe: Any, claim: Claim | None) -> None:
        """Queue on `pipe` (the transaction that makes what the claim names) the claim's lasting value."""
        if claim is not None:
            pipe.set(claim.key, claim.made(), ex=self.made_ttl_s)
