"""What a picture carries about how it was made: the parameters as applied, the seed, the steps done, where it ran
and hashes of its inputs, as JSON inside the PNG, JPEG, WebP or AVIF file (torch-free: the worker and `nst run`
write it, `nst info` and `nst run --from` read it).

PNG: a tEXt chunk named `nst` (not `parameters`, whose plain-text format belongs to other tools). JPEG, WebP, AVIF:
the EXIF UserComment, the one text field these formats carry through Pillow's same `exif=` option and that photo
tools show (as other image generators use it); an XMP packet would need XML to write and parse, a JPEG COM
segment has no WebP counterpart. Nothing about who asked (owner, API key) or where to call back (webhooks) is
ever written: the record holds only the fields built here.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from nst_shared.params import TransferParams

KEY = "nst"  # the PNG text chunk's keyword
PACKAGE = "nst"
_EXIF_IFD = 0x8769  # the Exif sub-IFD, where UserComment lives
_USER_COMMENT = 0x9286
_ASCII = b"ASCII\x00\x00\x00"  # UserComment's 8-byte character code; the JSON is written ASCII-only
_READABLE = ("PNG", "JPEG", "WEBP", "AVIF")


def engine_version() -> str:
    """The installed package's version ("unknown" when run from a tree that was never installed)."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(
    params: TransferParams,
    *,
    steps_done: int,
    device: str,
    precision: str,
    content: bytes,
    styles: Iterable[bytes],
    masks: Iterable[bytes] = (),
    job_id: str | None = None,
    attempt: int | None = None,
    frames: int | None = None,
) -> dict[str, Any]:
    """The record of one run: `params` as applied (with the seed the run used), and the input files' bytes,
    which are hashed (SHA-256), never stored; a service's run also names its job and the attempt that made it,
    a clip's the frames it painted (`steps_done` counting all of theirs)."""
    if params.seed is None:
        raise ValueError("draw the seed before the run (nst_shared.params.with_seed) so that it can be recorded")
    return {
        "engine": {"name": PACKAGE, "version": engine_version()},
        "params": params.to_dict(),
        "seed": params.seed,
        "steps_done": steps_done,
        "device": device,
        "precision": precision,
        "sha256": {
            "content": sha256(content),
            "styles": [sha256(s) for s in styles],
            "masks": [sha256(m) for m in masks],
        },
        **({"job": {"id": job_id, "attempt": attempt}} if job_id is not None else {}),
        **({"frames": frames} if frames is not None else {}),
    }


def save_options(format: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """Pillow `save` options that embed `record` in a file of `format` (PNG, JPEG, WEBP or AVIF)."""
    text = json.dumps(record, separators=(",", ":"))  # ASCII: fits tEXt and UserComment
    if format.upper() == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(KEY, text)
        return {"pnginfo": info}
    if format.upper() in ("JPEG", "WEBP", "AVIF"):
        exif = Image.Exif()
        exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _ASCII + text.encode("ascii")
        return {"exif": exif.tobytes()}
    raise ValueError(f"no provenance for {format} files")


def read(data: bytes) -> dict[str, Any] | None:
    """The record inside a PNG, JPEG or WebP file's bytes; None when it has none (or is not such a file)."""
    try:
        with Image.open(io.BytesIO(data), formats=_READABLE) as image:
            if image.format == "PNG":
                text: str | bytes | None = image.text.get(KEY)  # type: ignore[attr-defined]
            else:
                text = _user_comment(image)
    except Exception:  # not an image, or damaged metadata: no record either way
        return None
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("params"), dict) else None


def read_file(path: str | Path) -> dict[str, Any] | None:
    return read(Path(path).read_bytes())


def _user_comment(image: Image.Image) -> bytes | None:
    value = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    if isinstance(value, str):
        value = value.encode("ascii", "replace")
    if not isinstance(value, bytes) or not value.startswith(_ASCII):
        return None
    return value[len(_ASCII) :]
