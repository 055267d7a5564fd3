"""The POST /jobs multipart form: read into a `JobForm` (files, validated parameters, webhook), and its
OpenAPI schema; both are built from `TransferParams`, so a field, bound or default is never written here."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from nst_shared import webhook_outbox
from nst_shared.errors import InvalidParameter
from nst_shared.images import ALLOWED_FORMATS
from nst_shared.job_options import JobOptions
from nst_shared.masks import check_mask_count
from nst_shared.params import DEVICE_DEFAULTS, TransferParams, api_fields, first_error, form_properties, form_schema
from service.errors import ApiError

# The files of a submission, with their descriptions for the OpenAPI page.
FILES = {
    "content": "The photograph to paint, or a clip (MP4, MOV, WebM, animated GIF or WebP: the job is then a video).",
    "style": "One or more style images (repeat the field).",
    "style_mask": "Optional: one mask per style image, in the same order (repeat the field). White paints "
    "that style, black keeps it out, grey blends; where no mask is white the photo stays.",
}


class WebhookFields(BaseModel):
    """The form fields beside the parameters: where and when to report the job's end."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    webhook_url: Annotated[
        str | None, Field(max_length=2000, description="POSTed to when the job ends (signed; see docs/client.md).")
    ] = None
    webhook_events: Annotated[
        str,
        Field(
            max_length=200,
            description="Comma-separated: completed (the end), status (every status change), progress (the "
            "job's progress while it runs, at most one delivery every NST_WEBHOOK_PROGRESS_INTERVAL_S).",
        ),
    ] = "completed"

    @field_validator("webhook_events")
    @classmethod
    def _known_events(cls, text: str) -> str:
        events = [e.strip() for e in text.split(",") if e.strip()]
        if not events or any(e not in webhook_outbox.EVENTS for e in events):
            raise ValueError(f"any of {', '.join(webhook_outbox.EVENTS)}")
        return ",".join(events)

    @property
    def events(self) -> list[str]:
        return self.webhook_events.split(",")


FIELDS = {*FILES, *api_fields(), *WebhookFields.model_fields, *JobOptions.model_fields}
# The image types an upload may be, for the OpenAPI document.
IMAGE_TYPES = ", ".join(f"image/{name.lower()}" for name in ALLOWED_FORMATS)
CLIP_TYPES = "video/mp4, video/quicktime, video/webm, image/gif"  # the content's, besides IMAGE_TYPES


@dataclass(frozen=True)
class JobForm:
    """A submission as the form gave it: the uploads (not read yet) and the validated fields."""

    content: UploadFile
    styles: list[UploadFile]
    style_masks: list[UploadFile]  # none, or one per style
    params: TransferParams
    webhook: WebhookFields
    options: JobOptions


@contextlib.asynccontextmanager
async def form_data(request: Request, *, max_file_bytes: int) -> AsyncIterator[FormData]:
    """The request's form. A multipart one keeps files up to `max_file_bytes` in memory (the submission reads
    them whole anyway): Starlette spools a file past 1 MB to disk, a thread-pool hop for every chunk written
    and read."""
    content_type, _ = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data":
        async with request.form() as form:
            yield form
        return
    parser = MultiPartParser(request.headers, request.stream())
    parser.spool_max_size = max_file_bytes + 1
    try:
        form = await parser.parse()
    except MultiPartException as exc:  # as Starlette's request.form() answers it
        raise HTTPException(400, detail=exc.message) from None
    try:
        yield form
    finally:
        await form.close()


def read_job_form(form: FormData) -> JobForm:
    """The form as a `JobForm`; 422 naming the field for an unknown field, a missing file or a value the
    parameter model refuses (the deployment's caps come later, in service/submission.py)."""
    unknown = sorted(set(form.keys()) - FIELDS)
    if unknown:
        raise ApiError(422, "unknown_parameter", f"unknown form field(s): {', '.join(unknown)}", field=unknown[0])
    contents = form.getlist("content")
    content = contents[0] if len(contents) == 1 else None
    if not isinstance(content, UploadFile):
        raise ApiError(422, "invalid_parameter", "content: one image file is needed", field="content")
    styles = [s for s in form.getlist("style") if isinstance(s, UploadFile)]
    if not styles or len(styles) != len(form.getlist("style")):
        raise ApiError(422, "invalid_parameter", "style: at least one image file is needed", field="style")
    style_masks = [m for m in form.getlist("style_mask") if isinstance(m, UploadFile)]
    if len(style_masks) != len(form.getlist("style_mask")):
        raise ApiError(422, "invalid_parameter", "style_mask: image files are expected", field="style_mask")
    try:
        check_mask_count(len(style_masks), len(styles))
    except InvalidParameter as exc:
        raise ApiError(422, exc.code, str(exc), field=exc.field) from None
    values: dict[str, str] = {}
    for name in set(form.keys()) - set(FILES):
        value = form[name]
        if not isinstance(value, str):
            raise ApiError(422, "invalid_parameter", f"{name}: a value is expected, not a file", field=name)
        if value != "":  # an empty field is a field left blank: the default, as browsers send them
            values[name] = value
    return JobForm(
        content=content,
        styles=styles,
        style_masks=style_masks,
        params=_validated(TransferParams, {k: v for k, v in values.items() if k in api_fields()}),
        webhook=_validated(WebhookFields, {k: v for k, v in values.items() if k in WebhookFields.model_fields}),
        options=_validated(JobOptions, {k: v for k, v in values.items() if k in JobOptions.model_fields}),
    )


Model = TypeVar("Model", bound=BaseModel)


def _validated(model: type[Model], values: dict[str, str]) -> Model:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        field, message = first_error(exc)
        raise ApiError(422, "invalid_parameter", f"{field}: {message}" if field else message, field=field) from None


def job_form_schema(*, caps: dict[str, int], max_styles: int) -> dict[str, Any]:
    """The form as one flat object schema (files, parameters and webhook fields together), with this
    deployment's caps as the capped parameters' maximum: what generated clients build their call from."""
    parameters = copy.deepcopy(form_schema())
    for name, cap in caps.items():
        parameters[name]["maximum"] = min(parameters[name]["maximum"], cap)
    # A default that depends on the worker's device is described, not declared: generated clients send every
    # declared default, and a value sent is kept on every device.
    for device, defaults in DEVICE_DEFAULTS.items():
        for name, value in defaults.items():
            default = parameters[name].pop("default")
            parameters[name]["description"] += f" Default: {default}; {value} on a {device} worker."
    binary = {"type": "string", "format": "binary"}
    properties: dict[str, Any] = {
        "content": {**binary, "description": FILES["content"]},
        "style": {
            "type": "array",
            "items": binary,
            "minItems": 1,
            "maxItems": max_styles,
            "description": FILES["style"],
        },
        "style_mask": {"type": "array", "items": binary, "maxItems": max_styles, "description": FILES["style_mask"]},
        **parameters,
        **form_properties(WebhookFields),
        **form_properties(JobOptions),
    }
    return {
        "title": "JobSubmission",
        "type": "object",
        "properties": properties,
        "required": ["content", "style"],
        "additionalProperties": False,
        "description": "A style-transfer job: the images and, optionally, "
        "its parameters (a parameter left out takes its default).",
    }
