"""Submitting a job: the deployment's caps, the webhook and the images are checked, then the files are stored,
the record created and the job queued, all undone if a step fails; a repeated Idempotency-Key finds the job
the first request made."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from rq import Queue
from starlette.datastructures import UploadFile

from nst_shared import capacity, deadlines, webhook_urls
from nst_shared.errors import ImageError
from nst_shared.images import check_min_side, decode_image, fit_size
from nst_shared.job_options import deadline_of
from nst_shared.jobs import JobRecord, JobStatus, JobStore, Keys, new_job_id
from nst_shared.masks import check_mask_covers
from nst_shared.params import TransferParams
from nst_shared.queueing import enqueue_job
from nst_shared.schedule import style_longest_px
from nst_shared.settings import Settings
from nst_shared.storage import Storage
from service.caps import check_budget, check_caps, check_memory, check_options
from service.decoding import check_upload, pixel_budget
from service.errors import ApiError, from_image_error, not_found
from service.forms import JobForm


@dataclass(frozen=True)
class Submitted:
    """The job a submission made (or found, for a repeated Idempotency-Key) and its 1-based queue position."""

    record: JobRecord
    queue_position: int | None


class Submissions:
    """Turns a read form into a queued job (or answers why not, as an ApiError)."""

    def __init__(self, *, settings: Settings, store: JobStore, storage: Storage, queue: Queue) -> None:
        self.settings, self.store, self.storage, self.queue = settings, store, storage, queue

    async def submit(self, form: JobForm, *, owner: str | None, idempotency_key: str | None) -> Submitted:
        """The new job, or the earlier one when `idempotency_key` came before with the same request."""
        check_caps(form.params, styles=len(form.styles), settings=self.settings)
        check_options(form.options, settings=self.settings)
        form.params.style_weights(len(form.styles))  # InvalidParameter (422) unless one weight per style
        # Which parameters the client chose: the worker may replace the others with its device's defaults.
        extra: dict[str, Any] = {"explicit": sorted(form.params.model_fields_set), **form.options.record_extra()}
        if form.webhook.webhook_url:
            extra["webhook"] = await self.checked_webhook(form.webhook.webhook_url, form.webhook.events)
        content = await self.read_upload(form.content, "content")
        styles = [await self.read_upload(style, "style") for style in form.styles]
        masks = [await self.read_upload(mask, "style_mask") for mask in form.style_masks]
        if masks:
            extra["style_masks"] = len(masks)
        # Decoding, Redis and the disk block: off the event loop, so other requests and event streams go on.
        return await asyncio.to_thread(self._create, form.params, extra, content, styles, masks, owner, idempotency_key)

    async def read_upload(self, upload: UploadFile, field: str) -> bytes:
        limit = self.settings.max_upload_bytes
        if upload.size is not None and upload.size > limit:
            raise ApiError(
                413, "file_too_large", f"{field}: {upload.size} bytes; at most {limit} per file", field=field
            )
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, "file_too_large", f"{field}: at most {limit} bytes per file", field=field)
        return data

    async def checked_webhook(self, url: str, events: list[str]) -> dict[str, object]:
        """The job's webhook, once its URL passes the SSRF check (422 naming the field otherwise)."""
        if not self.settings.webhook_secret:
            raise ApiError(
                422,
                "webhooks_disabled",
                "webhooks are not configured on this service (NST_WEBHOOK_SECRET)",
                field="webhook_url",
            )
        try:  # DNS: off the loop
            await asyncio.to_thread(webhook_urls.check_url, url, allow=self.settings.webhook_allow)
        except webhook_urls.WebhookRefused as exc:
            raise ApiError(422, "webhook_refused", f"webhook_url: {exc}", field="webhook_url") from None
        return {"url": url, "events": events}

    def _create(
        self,
        params: TransferParams,
        extra: dict[str, Any],
        content: bytes,
        styles: list[bytes],
        masks: list[bytes],
        owner: str | None,
        idempotency_key: str | None,
    ) -> Submitted:
        """Check the images, then store and queue the job (or find the earlier one of this key)."""
        self.check_images(content, styles, params)
        self.check_masks(masks)
        self.check_queue_room(1)
        job_id = new_job_id()
        claim = None
        if idempotency_key:
            # Keys are per caller: another key's Idempotency-Key never finds (or blocks) this one's job.
            digest = _request_digest(params, extra, content, [*styles, *masks])
            claim, earlier_id = self.claim(f"{owner or ''}:{idempotency_key}", job_id, digest)
            if earlier_id is not None:
                existing = self._earlier(earlier_id)
                position = self.queue.get_job_position(existing.rq_job_id) if existing.rq_job_id else None
                queued = existing.status is JobStatus.QUEUED and position is not None
                return Submitted(existing, position + 1 if queued else None)
        try:
            self.store_files(job_id, content, styles, masks)
            with self.store.redis.pipeline() as pipe:  # the record and its RQ job: both or neither
                pipe.multi()  # (RQ asks for an explicit transaction)
                record = self.queue_in(pipe, job_id, params, extra, styles=len(styles), owner=owner)
                pipe.lpos(self.queue.key, job_id, rank=-1)  # a new job is near the tail: searched from there
                index = pipe.execute()[-1]
        except Exception:
            # Half-submitted (Redis went away mid-way): undo what we can so no job is left queued that no
            # worker will ever see, and so a retry with the same Idempotency-Key submits afresh.
            self.undo([job_id], claim)
            raise
        return Submitted(record, index + 1 if index is not None else None)

    def check_queue_room(self, jobs: int) -> None:
        """503 when `jobs` more would take the queue past NST_MAX_QUEUED_JOBS."""
        if self.queue.count + jobs > self.settings.max_queued_jobs:
            raise ApiError(
                503,
                "queue_full",
                f"{self.settings.max_queued_jobs} jobs are waiting at most; try again later",
                headers={"Retry-After": "30"},
            )

    def store_files(self, job_id: str, content: bytes, styles: list[bytes], masks: list[bytes]) -> None:
        self.storage.put(job_id, "content", content)
        for i, data in enumerate(styles):
            self.storage.put(job_id, f"style-{i}", data)
        for i, data in enumerate(masks):
            self.storage.put(job_id, f"style-mask-{i}", data)

    def queue_in(
        self,
        pipe: Any,
        job_id: str,
        params: TransferParams,
        extra: dict[str, Any],
        *,
        styles: int,
        owner: str | None,
    ) -> JobRecord:
        """Queue on `pipe` (a transaction) the job's record, its deadline if it has one, and its RQ job."""
        now = time.time()
        if (deadline_at := deadline_of(now, extra)) is not None:
            deadlines.register(pipe, job_id, deadline_at)
        record = self.store.create(
            job_id,
            params=params.to_dict(),
            styles=styles,
            owner=owner,
            extra=extra,
            rq_job_id=job_id,
            now=now,
            pipeline=pipe,
        )
        enqueue_job(self.queue, job_id, settings=self.settings, params=params.to_dict(), pipeline=pipe)
        return record

    def check_images(self, content: bytes, styles: list[bytes], params: TransferParams) -> None:
        try:
            content_size = check_upload(content, self.settings)
            out = fit_size(*content_size, params.max_size)
            check_min_side(out, "content image at this max_size")
            check_budget(params, content_size, self.settings)
            check_memory(out, capacity.offers(self.store.redis))
        except ImageError as exc:
            raise from_image_error(exc, "content") from None
        for data in styles:
            try:
                style_size = check_upload(data, self.settings)
                longest = style_longest_px(style_size, max(out), params.style_scale)
                check_min_side(fit_size(*style_size, longest), "style image at this style_scale")
            except ImageError as exc:
                raise from_image_error(exc, "style") from None

    def check_masks(self, masks: list[bytes]) -> None:
        """Each mask passes the checks of any image, and is white somewhere (decoded within the pixel budget)."""
        for index, data in enumerate(masks):
            try:
                width, height = check_upload(data, self.settings)
                with pixel_budget(self.settings.max_decoding_pixels).hold(width * height):
                    check_mask_covers(decode_image(data, max_pixels=self.settings.max_image_pixels), index)
            except ImageError as exc:
                raise from_image_error(exc, "style_mask") from None

    def undo(self, job_ids: list[str], claim: str | None) -> None:
        undos = [
            *(lambda job_id=job_id: self.store.delete(job_id) for job_id in job_ids),
            *(lambda job_id=job_id: self.storage.delete_job(job_id) for job_id in job_ids),
            lambda: self.store.redis.delete(claim) if claim else None,
        ]
        for undo in undos:
            try:
                undo()
            except Exception:  # best effort: Redis may still be down; the sweeper removes orphaned files
                pass

    def claim(self, key: str, new_id: str, body_hash: str) -> tuple[str | None, str | None]:
        """(the claimed Redis key, None) when this request owns the key; (None, the earlier request's id) when
        the same body came before; 422 when the key came with another body."""
        redis_key = Keys.idempotency(hashlib.sha256(key.encode()).hexdigest())
        claim = json.dumps({"job_id": new_id, "hash": body_hash})
        if self.store.redis.set(redis_key, claim, nx=True, ex=self.settings.result_ttl_s):
            return redis_key, None
        earlier = json.loads(self.store.redis.get(redis_key) or "{}")
        if earlier.get("hash") != body_hash:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
                field="Idempotency-Key",
            )
        return None, str(earlier["job_id"])

    def _earlier(self, job_id: str) -> JobRecord:
        for _ in range(50):  # the first request may still be storing its files
            record = self.store.get(job_id)
            if record is not None:
                return record
            time.sleep(0.05)
        raise not_found(job_id)


def _request_digest(params: TransferParams, extra: dict[str, Any], content: bytes, images: list[bytes]) -> str:
    """What makes two submissions the same request (images: the styles, then the masks), for an Idempotency-Key."""
    digest = hashlib.sha256(json.dumps(params.to_dict(), sort_keys=True).encode())
    for data in (content, *images):
        digest.update(hashlib.sha256(data).digest())
    digest.update(json.dumps(extra, sort_keys=True).encode())  # another webhook is another request
    return digest.hexdigest()
