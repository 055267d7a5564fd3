"""Delivers webhooks from the Redis queue on a thread of its own, so a slow receiver never blocks a job.
Failed deliveries are retried with exponential backoff; the queue lives in Redis, so none is lost when a
worker restarts."""

from __future__ import annotations

import json
import logging
import threading
import time

import httpx
import redis

from nst_shared.settings import Settings
from nst_shared.webhooks import PENDING, RETRY, WebhookRefused, check_url, sign

log = logging.getLogger("nst.webhooks")


class WebhookSender:
    def __init__(self, connection: redis.Redis, settings: Settings) -> None:
        self._redis, self._settings = connection, settings
        self._stop = threading.Event()
        self._http = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._promote_due_retries()
                item = self._redis.brpop([PENDING], timeout=1)
                if item:
                    self.deliver(json.loads(item[1]))
            except redis.exceptions.ConnectionError:
                self._stop.wait(1)
            except Exception:  # never let one bad delivery end the thread
                log.exception("webhook delivery crashed")

    def _promote_due_retries(self) -> None:
        for raw in self._redis.zrangebyscore(RETRY, 0, time.time(), start=0, num=50):
            if self._redis.zrem(RETRY, raw):  # only one sender takes each
                self._redis.lpush(PENDING, raw)

    def deliver(self, delivery: dict) -> bool:
        """One attempt; on failure the delivery is scheduled again, up to the configured attempts."""
        body = json.dumps(delivery["body"], separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": delivery["id"],
                   "webhook-timestamp": str(timestamp), "user-agent": "nst-webhooks/1",
                   "webhook-signature": sign(self._settings.webhook_secret, delivery["id"], timestamp, body)}
        job_id = delivery["body"].get("job", {}).get("id", "-")
        try:
            check_url(delivery["url"], allow=self._settings.webhook_allow)  # DNS may have changed since submit
            response = self._http.post(delivery["url"], content=body, headers=headers)
            if 200 <= response.status_code < 300:
                log.info("job %s: webhook %s delivered (attempt %d)", job_id, delivery["id"], delivery["attempt"] + 1)
                return True
            reason = f"HTTP {response.status_code}"
        except WebhookRefused as exc:
            log.warning("job %s: webhook %s refused: %s", job_id, delivery["id"], exc)
            return False
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
        delivery["attempt"] += 1
        if delivery["attempt"] >= self._settings.webhook_max_attempts:
            log.warning("job %s: webhook %s given up after %d attempts (%s)", job_id, delivery["id"],
                        delivery["attempt"], reason)
            return False
        delay = self._settings.webhook_backoff_s * 2 ** (delivery["attempt"] - 1)
        self._redis.zadd(RETRY, {json.dumps(delivery): time.time() + delay})
        log.info("job %s: webhook %s failed (%s); retry in %.1f s", job_id, delivery["id"], reason, delay)
        return False
