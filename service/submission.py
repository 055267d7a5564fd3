"""Submitting a job: the deployment's caps, the webhook and the images are checked, then the files are stored,
the record created and the job queued, all undone if a step fails; a repeated Idempotency-Key finds the job
the first request made."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis
from rq import Queue
from starlette.datastructures import UploadFile

from nst_shared import capacity, deadlines, webhook_urls
from nst_shared.clip_info import ClipInfo
from nst_shared.errors import ImageError
from nst_shared.images import check_min_side, decode_image, fit_size
from nst_shared.job_options import deadline_of
from nst_shared.job_status import JobStatus
from nst_shared.jobs import Files, JobRecord, JobStore, new_job_id
from nst_shared.keys import Keys
from nst_shared.masks import check_mask_covers
from nst_shared.params import TransferParams
from nst_shared.queueing import clip_frames, enqueue_job
from nst_shared.schedule import style_longest_px
from nst_shared.settings import Settings
from nst_shared.storage import Storage, StorageRefused
from service import clips
from service.caps import check_budget, check_caps, check_memory, check_options
from service.decoding import check_upload, pixel_budget
from service.errors import ApiError, from_image_error, not_found
from service.forms import JobForm
from service.idempotency import CLAIM_LEASE_S, ClaimLost, Claims

STORAGE_RETRY_AFTER_S = 60


@dataclass(frozen=True)
class Submitted:
    """The job a submission made (or found, for a repeated Idempotency-Key) and its 1-based queue position."""

    record: JobRecord
    queue_position: int | None


class Submissions:
    """Turns a read form into a queued job (or answers why not, as an ApiError)."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: JobStore,
        storage: Storage,
        queue: Queue,
        on_storage_refused: Callable[[str], None] = lambda code: None,
        claim_lease_s: float = CLAIM_LEASE_S,
    ) -> None:
        self.settings, self.store, self.storage, self.queue = settings, store, storage, queue
        self.on_storage_refused = on_storage_refused
        self.claim_lease_s = claim_lease_s

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
        clip = clips.checked_clip(content, params, self.settings)  # None for a picture
        if clip is not None:
            extra["video"] = clip.to_dict()
        self.check_images(content, styles, params, clip=clip)
        self.check_masks(masks)
        self.check_queue_room(1)
        job_id = new_job_id()
        claims, claim = self.job_claims(), None
        if idempotency_key:
            digest = _request_digest(params, extra, content, [*styles, *masks])
            claim, existing = claims.claim(
                owner=owner, idempotency_key=idempotency_key, made_id=job_id, body_hash=digest
            )
            if existing is not None:
                position = self.queue.get_job_position(existing.rq_job_id) if existing.rq_job_id else None
                queued = existing.status is JobStatus.QUEUED
                return Submitted(existing, position + 1 if queued and position is not None else None)
        try:
            # A live request keeps its claim; a dead one's lapses within the lease.
            self.store_files(job_id, content, styles, masks, on_stored=partial(claims.renew, claim))
            with self.store.redis.pipeline() as pipe:  # the record, its RQ job and its claim: all or none
                claims.watch(pipe, claim)
                pipe.multi()  # (RQ asks for an explicit transaction)
                record = self.queue_in(pipe, job_id, params, extra, styles=len(styles), owner=owner)
                claims.make_in(pipe, claim)  # the claim now lives as long as the record it names
                pipe.lpos(self.queue.key, job_id, rank=-1)  # a new job is near the tail: searched from there
                index = pipe.execute()[-1]
        except (ClaimLost, redis.WatchError):
            # Our lease ran out and a retry took the key over: its job is the answer, ours is undone.
            self._undo(job_id, None)
            return self._create(params, extra, content, styles, masks, owner, idempotency_key)
        except StorageRefused as exc:  # an outage of the storage, not a bug: undone, and the client told so
            self._undo(job_id, claim.key if claim else None)
            raise self.storage_refused(exc) from None
        except Exception:
            # Half-submitted (Redis went away mid-way): undo what we can so no job is left queued that no
            # worker will ever see, and so a retry with the same Idempotency-Key submits afresh.
            self._undo(job_id, claim.key if claim else None)
            raise
        return Submitted(record, index + 1 if index is not None else None)

    def storage_refused(self, exc: StorageRefused) -> ApiError:
        """What a client is told when the storage refused its files (counted for the metrics)."""
        code = "storage_full" if exc.full else "storage_unavailable"
        self.on_storage_refused(code)
        return ApiError(
            507 if exc.full else 503,
            code,
            f"{exc}; nothing was kept, try again later",
            headers={"Retry-After": str(STORAGE_RETRY_AFTER_S)},
        )

    def check_queue_room(self, jobs: int) -> None:
        """503 when `jobs` more would take the queue past NST_MAX_QUEUED_JOBS."""
        if self.queue.count + jobs > self.settings.max_queued_jobs:
            raise ApiError(
                503,
                "queue_full",
                f"{self.settings.max_queued_jobs} jobs are waiting at most; try again later",
                headers={"Retry-After": "30"},
            )

    def job_claims(self) -> Claims[JobRecord]:
        """The Idempotency-Key claims of jobs."""
        return Claims(
            self.store.redis,
            key_of=Keys.idempotency,
            id_field="job_id",
            find=self.store.get,
            gone=not_found,
            lease_s=self.claim_lease_s,
            made_ttl_s=self.settings.result_ttl_s,
        )

    def store_files(
        self,
        job_id: str,
        content: bytes,
        styles: list[bytes],
        masks: list[bytes],
        *,
        on_stored: Callable[[], None] = lambda: None,
    ) -> None:
        """Store a job's images; `on_stored` is called after each file."""
        files = {Files.CONTENT: content, **{Files.style(i): d for i, d in enumerate(styles)}}
        files.update({Files.style_mask(i): d for i, d in enumerate(masks)})
        for name, data in files.items():
            self.storage.put(job_id, name, data)
            on_stored()

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
        frames = clip_frames(extra)  # a clip's time limit grows with its frames
        enqueue_job(self.queue, job_id, settings=self.settings, params=params.to_dict(), pipeline=pipe, frames=frames)
        return record

    def check_images(
        self, content: bytes, styles: list[bytes], params: TransferParams, *, clip: ClipInfo | None = None
    ) -> None:
        """The content (a picture, or a clip's frame size) and the styles fit the job; a clip's own limits are
        service/clips.py's."""
        try:
            content_size = (clip.width, clip.height) if clip else check_upload(content, self.settings)
            out = fit_size(*content_size, params.max_size)
            check_min_side(out, "content image at this max_size")
            if clip is None:
                check_budget(params, content_size, self.settings)
            check_memory(out, capacity.offers(self.store.redis) or capacity.configured_offers(self.settings))
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

    def _undo(self, job_id: str, claim: str | None) -> None:
        self.undo([job_id], claim)

    def undo(self, job_ids: list[str], claim: str | None) -> None:
        """Remove what a submission cut short wrote: its records, its files, its Idempotency-Key's claim."""
        undos: list[Callable[[], object]] = [
            *(partial(self.store.delete, job_id) for job_id in job_ids),
            *(partial(self.storage.delete_job, job_id) for job_id in job_ids),
            lambda: self.store.redis.delete(claim) if claim else None,
        ]
        for undo in undos:
            try:
                undo()
            except Exception:  # best effort: Redis may still be down; the sweeper removes orphaned files
                pass


def _request_digest(params: TransferParams, extra: dict[str, Any], content: bytes, images: list[bytes]) -> str:
    """What makes two submissions the same request (images: the styles, then the masks), for an Idempotency-Key."""
    digest = hashlib.sha256(json.dumps(params.to_dict(), sort_keys=True).encode())
    for data in (content, *images):
        digest.update(hashlib.sha256(data).digest())
    digest.update(json.dumps(extra, sort_keys=True).encode())  # another webhook is another request
    return digest.hexdigest()
