"""Submitting a sweep: the job form plus one or two `sweep` fields; every cell's parameters are checked as a job's,
the sweep is priced as the sum of its cells, and its record and every cell's job are queued in one transaction."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis
from pydantic import ValidationError
from starlette.datastructures import FormData

from nst_shared.errors import ImageError, InvalidParameter
from nst_shared.keys import Keys
from nst_shared.params import TransferParams, first_error
from nst_shared.schedule import params_cost
from nst_shared.storage import StorageRefused
from nst_shared.sweeps import STYLE_AXIS, SweepRecord, SweepStore, new_sweep, parse_axes
from service.caps import check_caps, check_options
from service.decoding import check_upload
from service.errors import ApiError, from_image_error, sweep_not_found
from service.forms import JobForm, read_job_form
from service.idempotency import ClaimLost, Claims
from service.submission import Submissions

SWEEP_FIELD = "sweep"


@dataclass(frozen=True)
class SweepForm:
    job: JobForm  # the shared images, parameters and options
    axes_text: list[str]


def read_sweep_form(form: FormData) -> SweepForm:
    """The job form's fields, and the `sweep` fields (name=v1,v2,...)."""
    axes = [v for v in form.getlist(SWEEP_FIELD) if isinstance(v, str) and v.strip()]
    if not axes:
        raise ApiError(422, "invalid_parameter", "sweep: name=value,value,... is needed", field=SWEEP_FIELD)
    rest = FormData([(k, v) for k, v in form.multi_items() if k != SWEEP_FIELD])
    return SweepForm(job=read_job_form(rest), axes_text=axes)


class SweepSubmissions:
    """Turns a read sweep form into a sweep and its queued cells (or answers why not, as an ApiError)."""

    def __init__(self, submissions: Submissions, sweeps: SweepStore) -> None:
        self.submissions, self.sweeps = submissions, sweeps
        self.settings = submissions.settings

    async def submit(self, form: SweepForm, *, owner: str | None, idempotency_key: str | None) -> SweepRecord:
        job = form.job
        try:
            axes = parse_axes(form.axes_text, max_cells=self.settings.max_sweep_cells)
        except InvalidParameter as exc:
            raise ApiError(422, exc.code, str(exc), field=exc.field) from None
        check_options(job.options, settings=self.settings)
        given = {k: v for k, v in job.params.to_dict().items() if k in job.params.model_fields_set}
        sweep = new_sweep(axes, owner=owner)
        cells = [_cell_params(given, cell["values"]) for cell in sweep.cells]
        picks = [_style_pick(cell["values"], len(job.styles), blend=job.params.style_blend) for cell in sweep.cells]
        for params, pick in zip(cells, picks, strict=True):
            check_caps(params, styles=len(pick), settings=self.settings)
            params.style_weights(len(pick))
        extra: dict[str, Any] = job.options.record_extra()
        if job.webhook.webhook_url:
            extra["webhook"] = await self.submissions.checked_webhook(job.webhook.webhook_url, job.webhook.events)
        content = await self.submissions.read_upload(job.content, "content")
        styles = [await self.submissions.read_upload(style, "style") for style in job.styles]
        masks = [await self.submissions.read_upload(mask, "style_mask") for mask in job.style_masks]
        if masks:
            extra["style_masks"] = len(masks)
        return await asyncio.to_thread(
            self._create, sweep, cells, picks, extra, content, styles, masks, owner, idempotency_key
        )

    def _create(
        self,
        sweep: SweepRecord,
        cells: list[TransferParams],
        picks: list[list[int]],
        extra: dict[str, Any],
        content: bytes,
        styles: list[bytes],
        masks: list[bytes],
        owner: str | None,
        idempotency_key: str | None,
    ) -> SweepRecord:
        submissions = self.submissions
        distinct = {json.dumps([p.to_dict(), pick], sort_keys=True): (p, pick) for p, pick in zip(cells, picks)}
        for params, pick in distinct.values():
            submissions.check_images(content, [styles[i] for i in pick], params)
        submissions.check_masks(masks)
        self._check_total_budget(cells, content)
        submissions.check_queue_room(len(cells))
        claims, claim = self.sweep_claims(), None
        if idempotency_key:
            digest = _sweep_digest(sweep, cells, extra, content, [*styles, *masks])
            claim, earlier = claims.claim(
                owner=owner, idempotency_key=idempotency_key, made_id=sweep.id, body_hash=digest
            )
            if earlier is not None:
                return earlier
        try:
            for cell, pick in zip(sweep.cells, picks, strict=True):
                cell_masks = [masks[i] for i in pick] if masks else []
                submissions.store_files(
                    cell["job_id"],
                    content,
                    [styles[i] for i in pick],
                    cell_masks,
                    on_stored=partial(claims.renew, claim),
                )
            with submissions.store.redis.pipeline() as pipe:  # the sweep, every cell and the claim: all or none
                claims.watch(pipe, claim)
                pipe.multi()
                for cell, params, pick in zip(sweep.cells, cells, picks, strict=True):
                    cell_extra = {**extra, "explicit": sorted(params.model_fields_set), "sweep_id": sweep.id}
                    if masks:  # one per style the cell paints with
                        cell_extra["style_masks"] = len(pick)
                    submissions.queue_in(pipe, cell["job_id"], params, cell_extra, styles=len(pick), owner=owner)
                self.sweeps.create_in(pipe, sweep)
                claims.make_in(pipe, claim)  # the claim now lives as long as the sweep's cells
                pipe.execute()
        except (ClaimLost, redis.WatchError):
            # Our lease ran out and a retry took the key over: its sweep is the answer, ours is undone.
            submissions.undo(sweep.job_ids, None)
            return self._create(sweep, cells, picks, extra, content, styles, masks, owner, idempotency_key)
        except StorageRefused as exc:
            submissions.undo(sweep.job_ids, claim.key if claim else None)
            raise submissions.storage_refused(exc) from None
        except Exception:
            submissions.undo(sweep.job_ids, claim.key if claim else None)
            raise
        return sweep

    def sweep_claims(self) -> Claims[SweepRecord]:
        """The Idempotency-Key claims of sweeps: keys of their own, so a job's key never finds a sweep."""
        return Claims(
            self.sweeps.redis,
            key_of=Keys.sweep_idempotency,
            id_field="sweep_id",
            find=self.sweeps.get,
            gone=sweep_not_found,
            lease_s=self.submissions.claim_lease_s,
            made_ttl_s=self.settings.result_ttl_s,
        )

    def _check_total_budget(self, cells: list[TransferParams], content: bytes) -> None:
        """A sweep is priced as the sum of its cells against NST_MAX_STEP_MEGAPIXELS."""
        try:
            size = check_upload(content, self.settings)
        except ImageError as exc:
            raise from_image_error(exc, "content") from None
        total = sum(params_cost(params, size) for params in cells)
        if total > self.settings.max_step_megapixels:
            raise ApiError(
                422,
                "over_budget",
                f"the sweep's {len(cells)} cells cost {total:.1f} steps x megapixels together, over this "
                f"service's budget of {self.settings.max_step_megapixels:g}; fewer cells, steps or max_size",
                field="sweep",
            )


def _style_pick(values: dict[str, str], styles: int, *, blend: tuple[float, ...] | None) -> list[int]:
    """The indexes of the styles a cell paints with: all of them, or on the style axis its one."""
    if STYLE_AXIS not in values:
        return list(range(styles))
    number = int(values[STYLE_AXIS])
    if number > styles:
        raise ApiError(422, "invalid_parameter", f"sweep: style {number}, of {styles} style images", field="sweep")
    if blend is not None:
        raise ApiError(
            422, "invalid_parameter", "style_blend: a sweep over the styles paints one at a time", field="style_blend"
        )
    return [number - 1]


def _cell_params(given: dict[str, Any], values: dict[str, str]) -> TransferParams:
    """One cell's parameters: the form's, with the cell's values (validated as the form's are)."""
    try:
        return TransferParams.model_validate({**given, **{k: v for k, v in values.items() if k != STYLE_AXIS}})
    except ValidationError as exc:
        field, message = first_error(exc)
        cell = ", ".join(f"{k}={v}" for k, v in values.items())
        raise ApiError(422, "invalid_parameter", f"sweep: the cell {cell}: {field}: {message}", field="sweep") from None
    except InvalidParameter as exc:
        raise ApiError(422, exc.code, str(exc), field="sweep") from None


def _sweep_digest(
    sweep: SweepRecord, cells: list[TransferParams], extra: dict[str, Any], content: bytes, images: list[bytes]
) -> str:
    """What makes two sweep submissions the same request, for an Idempotency-Key."""
    digest = hashlib.sha256(json.dumps([p.to_dict() for p in cells], sort_keys=True).encode())
    digest.update(json.dumps([a.text() for a in sweep.axes]).encode())
    for data in (content, *images):
        digest.update(hashlib.sha256(data).digest())
    digest.update(json.dumps(extra, sort_keys=True).encode())
    return digest.hexdigest()
