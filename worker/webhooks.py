"""Delivers webhooks from their Redis queue on a thread of its own, so a slow receiver never blocks a job.

Failed deliveries are retried with exponential backoff; the queue lives in Redis, so a delivery outlives the
worker that queued it, and any worker may send it. Each attempt checks the URL again and connects to the
addresses that check resolved (no second lookup), so DNS rebinding cannot turn it to a private address.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any, Callable

import httpx
import redis

from nst_shared.logs import current_job_id
from nst_shared.settings import Settings
from nst_shared.webhooks import PENDING, RETRY, Resolver, Target, WebhookRefused, check_url, signed_headers

log = logging.getLogger("nst.webhooks")


def pinned_request(target: Target, body: bytes, headers: dict[str, str]) -> httpx.Request:
    """A POST to the first checked address of `target`, still naming its host (Host header, TLS SNI and
    certificate check), so the connection goes where the SSRF check looked."""
    url = httpx.URL(target.url)
    pinned = url.copy_with(host=target.addresses[0])
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return httpx.Request("POST", pinned, content=body, extensions=extensions,
                         headers={**headers, "Host": url.netloc.decode("ascii")})


class WebhookSender:
    """Takes deliveries off `nst:webhooks:pending`, POSTs them signed, and reschedules failures."""

    def __init__(self, connection: redis.Redis, settings: Settings, *, resolver: Resolver = socket.getaddrinfo,
                 clock: Callable[[], float] = time.time, transport: httpx.BaseTransport | None = None) -> None:
        self._redis, self._settings = connection, settings
        self._resolver, self._clock = resolver, clock
        self._stop = threading.Event()
        # No redirects (a 3xx could point anywhere) and no proxies from the environment (they would make
        # the connection somewhere else than the address checked).
        self._http = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False,
                                  transport=transport)
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.promote_due_retries()
                item = self._redis.brpop([PENDING], timeout=1)
                if item:
                    delivery = json.loads(item[1])
                    token = current_job_id.set((delivery["body"].get("job") or {}).get("id"))
                    try:
                        self.deliver(delivery)
                    finally:
                        current_job_id.reset(token)
            except redis.exceptions.ConnectionError:
                self._stop.wait(1)
            except Exception:  # one bad delivery must not end the thread
                log.exception("webhook delivery crashed")

    def promote_due_retries(self) -> None:
        for raw in self._redis.zrangebyscore(RETRY, 0, self._clock(), start=0, num=50):
            if self._redis.zrem(RETRY, raw):  # only the sender that removes it sends it
                self._redis.lpush(PENDING, raw)

    def deliver(self, delivery: dict[str, Any]) -> bool:
        """One attempt; a failure is scheduled again after a doubling delay, up to the configured attempts.
        True when the receiver answered 2xx."""
        body = json.dumps(delivery["body"], separators=(",", ":")).encode()
        headers = {"content-type": "application/json", "user-agent": "nst-webhooks/1",
                   **signed_headers(self._settings.webhook_secret, delivery["id"], body, now=self._clock())}
        job_id = (delivery["body"].get("job") or {}).get("id", "-")
        try:
            target = check_url(delivery["url"], allow=self._settings.webhook_allow, resolver=self._resolver)
            response = self._http.send(pinned_request(target, body, headers))
            if 200 <= response.status_code < 300:
                log.info("job %s: webhook %s delivered (attempt %d)", job_id, delivery["id"],
                         delivery["attempt"] + 1)
                return True
            reason = f"HTTP {response.status_code}"
        except WebhookRefused as exc:  # not retried: the URL has become one we may not call
            log.warning("job %s: webhook %s refused at delivery: %s", job_id, delivery["id"], exc)
            return False
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        delivery["attempt"] += 1
        if delivery["attempt"] >= self._settings.webhook_max_attempts:
            log.warning("job %s: webhook %s given up after %d attempts (%s)", job_id, delivery["id"],
                        delivery["attempt"], reason)
            return False
        delay_s = self._settings.webhook_backoff_s * 2 ** (delivery["attempt"] - 1)
        self._redis.zadd(RETRY, {json.dumps(delivery): self._clock() + delay_s})
        log.info("job %s: webhook %s failed (%s); attempt %d in %.1f s", job_id, delivery["id"], reason,
                 delivery["attempt"] + 1, delay_s)
        return False
