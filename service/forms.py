"""The POST /jobs form: its fields, defaults, bounds and help come from `TransferParams` (defined once)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Optional

from pydantic import BaseModel, Field, create_model

from nst_shared.params import INITS, TransferParams, param_fields
from nst_shared.settings import Settings
from service.errors import ApiError


def _form_field(field: dataclasses.Field) -> tuple[Any, Any]:
    meta = field.metadata
    bounds = {k: meta[k] for k in ("ge", "le", "gt") if meta.get(k) is not None}
    if field.name == "style_blend":
        return Optional[str], Field(None, description=meta["help"] + " Comma-separated, e.g. 0.7,0.3.",
                                    pattern=r"^\s*[0-9.eE+-]+(\s*,\s*[0-9.eE+-]+)*\s*$", max_length=200)
    if field.name == "init":
        return Literal[INITS], Field(field.default, description=meta["help"])  # type: ignore[valid-type]
    kind = {"int": int, "float": float, "bool": bool}.get(str(field.type).split(" ")[0].replace("'", ""), None)
    if kind is None:
        kind = type(field.default) if field.default is not None else int
    annotation = Optional[kind] if field.default is None else kind
    return annotation, Field(field.default, description=meta["help"], **bounds)


JobForm: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "JobForm",
    **{f.name: _form_field(f) for f in param_fields() if f.metadata.get("api")},
)


def check_known_fields(names: set[str]) -> None:
    """422 for a form field the API does not know (a typo would otherwise be silently ignored)."""
    unknown = sorted(names - set(JobForm.model_fields) - {"content", "style", "webhook_url", "webhook_events"})
    if unknown:
        raise ApiError(422, "unknown_parameter", f"unknown form field(s): {', '.join(unknown)}",
                       field=unknown[0])


def to_params(form: BaseModel, *, styles: int, settings: Settings) -> TransferParams:
    """The form as engine parameters, checked against this deployment's limits and the number of styles."""
    values = form.model_dump()
    if values["max_size"] > settings.max_size_px:
        raise ApiError(422, "invalid_parameter", f"max_size: at most {settings.max_size_px} px on this service",
                       field="max_size")
    if values["steps"] > settings.max_steps:
        raise ApiError(422, "invalid_parameter", f"steps: at most {settings.max_steps} on this service",
                       field="steps")
    for name in ("content_weight", "style_weight", "tv_weight", "style_scale", "early_stop_tolerance"):
        if not math.isfinite(values[name]):
            raise ApiError(422, "invalid_parameter", f"{name}: must be a finite number", field=name)
    blend_text = values.pop("style_blend")
    blend = None
    if blend_text:
        try:
            blend = tuple(float(x) for x in blend_text.split(","))
        except ValueError:
            raise ApiError(422, "invalid_parameter", "style_blend: comma-separated numbers, e.g. 0.7,0.3",
                           field="style_blend") from None
        if len(blend) != styles:
            raise ApiError(422, "invalid_parameter",
                           f"style_blend: {len(blend)} weights for {styles} style images", field="style_blend")
        if any(not math.isfinite(w) or w < 0 for w in blend) or sum(blend) <= 0:
            raise ApiError(422, "invalid_parameter", "style_blend: weights must be >= 0 and not all 0",
                           field="style_blend")
    return TransferParams(style_blend=blend, **values)
