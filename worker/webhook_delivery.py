"""Delivers webhooks from the Redis outbox on a thread of its own, so a slow receiver never blocks a job.

At least once: a delivery is moved (BLMOVE) to this sender's processing list and leaves it only when it is
sent, given up or rescheduled; the lists of senders that died go back to the outbox. Failed deliveries are
retried with exponential backoff, by any worker. Each attempt checks the URL again and connects to the
addresses that check resolved (no second lookup), so DNS rebinding cannot turn it to a private address.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import redis

from nst_shared.keys import Keys
from nst_shared.logs import current_job_id
from nst_shared.redis_outages import REDIS_DOWN
from nst_shared.settings import Settings
from nst_shared.webhook_outbox import delivery_body
from nst_shared.webhook_signing import signed_headers
from nst_shared.webhook_urls import Resolver, Target, WebhookRefused, check_url
from worker.outage import until_redis_answers

log = logging.getLogger("nst.webhooks")

# KEYS: retry set, outbox. ARGV: now, most to move. Due retries back to the outbox, each by one sender only.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, raw in ipairs(due) do
  redis.call('ZREM', KEYS[1], raw)
  redis.call('LPUSH', KEYS[2], raw)
end
return #due
"""

# KEYS: senders set, outbox. ARGV: processing list prefix, alive key prefix. The deliveries of senders whose
# alive key expired (the process died) go back to the outbox, in their order.
_RECLAIM = """
local moved = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[2] .. id) == 0 then
    while redis.call('LMOVE', ARGV[1] .. id, KEYS[2], 'RIGHT', 'RIGHT') do moved = moved + 1 end
    redis.call('SREM', KEYS[1], id)
  end
end
return moved
"""


class DeliveryDeadline(httpx.TransportError):
    """Raised when a delivery outlasts NST_WEBHOOK_TIMEOUT_S as a whole (a receiver trickling its answer)."""


def post_within(http: httpx.Client, request: httpx.Request, *, total_s: float) -> int:
    """POST `request` and return the answer's status, within `total_s` in all, never reading the body (a
    receiver's status is all a delivery needs). httpx's timeouts bound each read, not the whole exchange: at the
    deadline a timer shuts the connection's socket, which ends a read that is still waiting."""
    sockets: list[socket.socket] = []
    expired = threading.Event()

    def trace(event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete" and info.get("return_value") is not None:
            sock = info["return_value"].get_extra_info("socket")
            if sock is not None:
                sockets.append(sock)

    def cut() -> None:
        expired.set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    request.extensions = {**request.extensions, "trace": trace}
    timer = threading.Timer(total_s, cut)
    timer.daemon = True
    timer.start()
    try:
        # The status line and headers (h11 refuses headers over 16 KB); the body is never read.
        response = http.send(request, stream=True)
        response.close()
        return response.status_code
    except httpx.TransportError:
        if expired.is_set():
            raise DeliveryDeadline(f"no complete answer within {total_s:g} s") from None
        raise
    finally:
        timer.cancel()


def pinned_request(target: Target, body: bytes, headers: dict[str, str]) -> httpx.Request:
    """A POST to the first checked address of `target`, still naming its host (Host header, TLS SNI and
    certificate check), so the connection goes where the SSRF check looked."""
    url = httpx.URL(target.url)
    pinned = url.copy_with(host=target.addresses[0])
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return httpx.Request(
        "POST", pinned, content=body, extensions=extensions, headers={**headers, "Host": url.netloc.decode("ascii")}
    )


class WebhookSender:
    """Takes deliveries off the outbox, POSTs them signed, and reschedules failures."""

    def __init__(
        self,
        connection: redis.Redis,
        settings: Settings,
        *,
        resolver: Resolver = socket.getaddrinfo,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._redis, self._settings = connection, settings
        self._resolver, self._clock = resolver, clock
        self.id = uuid.uuid4().hex
        self._processing = Keys.webhook_processing(self.id)
        # Longer than one delivery and one wait for the next can take, so a live sender is not taken for dead.
        self._alive_ttl_s = settings.webhook_timeout_s + settings.heartbeat_ttl_s + 1
        self._promote = connection.register_script(_PROMOTE)
        self._reclaim = connection.register_script(_RECLAIM)
        self._stop = threading.Event()
        # No redirects (a 3xx could point anywhere) and no proxies from the environment (they would make
        # the connection somewhere else than the address checked).
        # No kept-alive connections: each delivery opens its own, which its deadline may cut.
        self._http = httpx.Client(
            timeout=settings.webhook_timeout_s,
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._settings.webhook_timeout_s + 5)
        self._http.close()
        try:  # a clean stop hands back at once what a crash would leave to the reclaim
            self._redis.delete(Keys.webhook_sender(self.id))
            self.reclaim()
        except redis.exceptions.RedisError:
            pass

    def _run(self) -> None:
        reclaimed_at = 0.0
        while not self._stop.is_set():
            try:
                pipe = self._redis.pipeline()
                pipe.sadd(Keys.webhook_senders, self.id)
                pipe.set(Keys.webhook_sender(self.id), 1, px=int(self._alive_ttl_s * 1000))
                pipe.execute()
                if time.monotonic() - reclaimed_at > self._settings.reaper_interval_s:
                    self.reclaim()
                    reclaimed_at = time.monotonic()
                self.promote_due_retries()
                self.send_next(timeout_s=1)
            except REDIS_DOWN:
                self._stop.wait(1)
            except Exception:  # one bad delivery must not end the thread
                log.exception("webhook delivery crashed")

    def send_next(self, *, timeout_s: int) -> bool:
        """Take the oldest delivery (waiting up to `timeout_s`) and deliver it; False when there was none."""
        raw = self._redis.blmove(Keys.webhooks_pending, self._processing, timeout_s, "RIGHT", "LEFT")
        if raw is None:
            return False
        try:
            delivery = json.loads(raw)
            delivery_body(delivery)
        except (ValueError, KeyError, TypeError, AttributeError):  # sent again, it would fail again: dropped
            log.error("webhook delivery dropped: not an outbox entry: %.200r", raw)
            self._redis.lrem(self._processing, 1, raw)  # type: ignore[arg-type]  # stub says str; LREM takes bytes
            return True
        token = current_job_id.set(delivery["record"].get("id"))
        try:
            # A delivery lasts at most webhook_timeout_s, less than this key's life: no one takes it for dead.
            self._redis.set(Keys.webhook_sender(self.id), 1, px=int(self._alive_ttl_s * 1000))
            self.deliver(delivery, taken=raw)
        finally:
            current_job_id.reset(token)
        return True

    def promote_due_retries(self) -> int:
        return int(self._promote(keys=[Keys.webhooks_retry, Keys.webhooks_pending], args=[self._clock(), 50]))

    def reclaim(self) -> int:
        """Put the deliveries of dead senders back in the outbox; returns how many."""
        prefixes = [Keys.webhook_processing(""), Keys.webhook_sender("")]
        moved = int(self._reclaim(keys=[Keys.webhook_senders, Keys.webhooks_pending], args=prefixes))
        if moved:
            log.warning("%d webhook deliveries of a stopped worker queued again", moved)
        return moved

    def deliver(self, delivery: dict[str, Any], *, taken: bytes | str | None = None) -> bool:
        """One attempt; a failure is scheduled again after a doubling delay, up to the configured attempts,
        in the same transaction that removes the delivery (`taken`, as it was read) from this sender's
        processing list. True when the receiver answered 2xx."""
        body = json.dumps(delivery_body(delivery), separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            "user-agent": "nst-webhooks/1",
            **signed_headers(self._settings.webhook_secret, delivery["id"], body, now=self._clock()),
        }
        job_id = delivery["record"].get("id", "-")
        retry_at: float | None = None
        try:
            target = check_url(delivery["url"], allow=self._settings.webhook_allow, resolver=self._resolver)
            status = post_within(
                self._http, pinned_request(target, body, headers), total_s=self._settings.webhook_timeout_s
            )
            delivered = 200 <= status < 300
            reason = f"HTTP {status}"
        except WebhookRefused as exc:  # not retried: the URL has become one we may not call
            log.warning("job %s: webhook %s refused at delivery: %s", job_id, delivery["id"], exc)
            self._done(taken, None)
            return False
        except httpx.HTTPError as exc:
            delivered, reason = False, f"{type(exc).__name__}: {exc}"
        if delivered:
            log.info("job %s: webhook %s delivered (attempt %d)", job_id, delivery["id"], delivery["attempt"] + 1)
            self._done(taken, None)
            return True
        retry = {**delivery, "attempt": delivery["attempt"] + 1}
        if retry["attempt"] >= self._settings.webhook_max_attempts:
            log.warning(
                "job %s: webhook %s given up after %d attempts (%s)", job_id, delivery["id"], retry["attempt"], reason
            )
            self._done(taken, None)
            return False
        delay_s = self._settings.webhook_backoff_s * 2 ** (retry["attempt"] - 1)
        retry_at = self._clock() + delay_s
        self._done(taken, (json.dumps(retry), retry_at))
        log.info(
            "job %s: webhook %s failed (%s); attempt %d in %.1f s",
            job_id,
            delivery["id"],
            reason,
            retry["attempt"] + 1,
            delay_s,
        )
        return False

    def _done(self, taken: bytes | str | None, retry: tuple[str, float] | None) -> None:
        """Drop the delivery from the processing list; `retry` (the entry, when to send it) goes in the retry set."""

        def write() -> None:
            pipe = self._redis.pipeline()
            if taken is not None:
                pipe.lrem(self._processing, 1, taken)  # type: ignore[arg-type]  # stub says str; LREM takes bytes
            if retry is not None:
                entry, retry_at = retry
                pipe.zadd(Keys.webhooks_retry, {entry: retry_at})
            pipe.execute()

        # Until Redis takes it (a delivery left in the processing list would be sent again), or the worker
        # stops (then a later sender's reclaim sends it again).
        until_redis_answers(write, what="webhook delivery", stop=self._stop.is_set)
