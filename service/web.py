"""The web page at `/`, its assets, the example images, and the limits the page needs to check uploads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from nst_shared.device_defaults import param_caps
from nst_shared.looks import LOOK_DESCRIPTIONS, LOOK_NAMES
from nst_shared.params import TransferParams, form_schema
from service.deps import SettingsDep
from service.errors import ApiError

STATIC = Path(__file__).resolve().parent / "static"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LOOK_THUMBNAILS = EXAMPLES / "looks"  # written by examples/make_looks.py
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}")
def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise ApiError(404, "not_found", f"no asset {name!r}")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


@router.get("/examples/{name}")
def example(name: str) -> FileResponse:
    allowed = {p.name: p for p in EXAMPLES.glob("*.jpg")}  # a fixed set: no path from the client is used
    if name not in allowed:
        raise ApiError(404, "not_found", f"no example {name!r}")
    return FileResponse(allowed[name], media_type="image/jpeg")


@router.get("/examples/looks/{name}")
def look_thumbnail(name: str) -> FileResponse:
    allowed = {f"{look}.jpg": LOOK_THUMBNAILS / f"{look}.jpg" for look in LOOK_NAMES}
    if name not in allowed or not allowed[name].is_file():
        raise ApiError(404, "not_found", f"no look thumbnail {name!r}")
    return FileResponse(allowed[name], media_type="image/jpeg")


@router.get("/api/config")
def config(settings: SettingsDep, request: Request) -> dict[str, Any]:
    """Defaults and bounds of every parameter, with this deployment's caps: the page checks against these."""
    caps = param_caps(settings)
    params = {
        name: {
            "default": TransferParams.model_fields[name].default,
            "min": schema.get("minimum"),
            "max": min(schema["maximum"], caps[name]) if name in caps else schema.get("maximum"),
            "help": schema["description"],
            "choices": schema.get("enum"),
        }
        for name, schema in form_schema().items()
    }
    return {
        "params": params,
        "max_upload_bytes": settings.max_upload_bytes,
        "max_styles": settings.max_styles,
        "api_keys": request.app.state.keys.enabled,
        "formats": ["image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff"],
        "examples": {"content": ["chelsea.jpg"], "style": ["swirls.jpg", "mosaic.jpg"]},
        "looks": [_look(name, set(params) - {"look"}) for name in LOOK_NAMES],
    }


def _look(name: str, fields: set[str]) -> dict[str, Any]:
    """A look as the page shows it: its thumbnail, and the values its controls take when it is picked."""
    return {
        "name": name,
        "description": LOOK_DESCRIPTIONS[name],
        "thumbnail": f"/examples/looks/{name}.jpg",
        "values": TransferParams(look=name).model_dump(mode="json", include=fields),
    }
