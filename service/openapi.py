"""The OpenAPI document, written for generated clients: the flat submission form built from the parameter
model, the one error schema on every refusal, binary images and the event stream declared as what they are."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from nst_shared.clip_info import MEDIA_TYPES as CLIP_MEDIA_TYPES
from nst_shared.device_defaults import param_caps
from nst_shared.job_options import MEDIA_TYPES
from nst_shared.settings import Settings
from nst_shared.sweeps import MAX_AXES
from service.auth import parse_api_keys
from service.forms import CLIP_TYPES, FILES, IMAGE_TYPES, job_form_schema
from service.schemas import ErrorBody

ERRORS = {
    401: "No API key, or one not accepted (when the service has keys), or an expired link",
    404: "No such job (unknown, deleted, expired or another key's), or its file is gone",
    409: "The job is not in a state for this",
    413: "An upload or the request body is too large",
    415: "An image in a format the service does not take",
    422: "A form field, parameter, header or image the service refuses (`field` names it)",
    429: "Too many requests (see Retry-After)",
    503: "The job store is unavailable or the queue is full (see Retry-After)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route that can refuse with these statuses, each with the one error schema."""
    return {status: {"model": ErrorBody, "description": ERRORS[status]} for status in statuses}


def image_response(description: str, *, first: str = "png", clips: bool = False) -> dict[int | str, dict[str, Any]]:
    """A picture in any format we make (`first` unless Accept prefers another); with `clips`, a clip's video too."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    types = [MEDIA_TYPES[first], *(t for t in MEDIA_TYPES.values() if t != MEDIA_TYPES[first])]
    types += list(CLIP_MEDIA_TYPES.values()) if clips else []
    # The same bytes as application/octet-stream for clients that ask for it (generators that read any binary).
    return {200: {"description": description, "content": {t: binary for t in [*types, "application/octet-stream"]}}}


PICTURE_ENCODING = {name: {"contentType": IMAGE_TYPES} for name in FILES}  # a sweep's files: pictures only
SUBMISSION_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"$ref": "#/components/schemas/JobSubmission"},
                # The types each file field takes (others are a 415): a job's content may be a clip too.
                "encoding": {**PICTURE_ENCODING, "content": {"contentType": f"{IMAGE_TYPES}, {CLIP_TYPES}"}},
            }
        },
    }
}


def sweep_form_schema(job_form: dict[str, Any]) -> dict[str, Any]:
    """The job form and its `sweep` field (once or twice)."""
    sweep = {
        "type": "array",
        "items": {"type": "string", "pattern": r"^\s*[a-z_]+\s*=\s*[^,]+(\s*,\s*[^,]+)*\s*$", "maxLength": 500},
        "minItems": 1,
        "maxItems": MAX_AXES,
        "description": "An axis of the grid: a parameter and its values, `name=v1,v2,...` (e.g. "
        "`style_weight=5,15,45`, `look=subtle,painterly`); one or two axes.",
    }
    return {
        **job_form,
        "title": "SweepSubmission",
        "properties": {**job_form["properties"], "sweep": sweep},
        "required": [*job_form["required"], "sweep"],
        "description": "A sweep: the job form, and the parameters to vary.",
    }


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve the document with the submission form's schema, whose capped bounds are this deployment's."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["JobSubmission"] = job_form_schema(caps=param_caps(settings), max_styles=settings.max_styles)
            schemas["SweepSubmission"] = sweep_form_schema(schemas["JobSubmission"])
            if not parse_api_keys(settings.api_keys):  # a key is optional here: say so on every route
                for operation in (op for path in document["paths"].values() for op in path.values()):
                    if "security" in operation:
                        operation["security"].append({})
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
