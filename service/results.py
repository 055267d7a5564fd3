"""A job's result and preview in the format a download asks for: the job's own format (chosen at submission)
unless the Accept header prefers another we make. Other formats are encoded from the lossless master, with
its provenance carried over, and kept beside it so each is encoded once."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from nst_shared import provenance
from nst_shared.images import encode_image
from nst_shared.job_options import MEDIA_TYPES
from nst_shared.storage import Storage

FORMAT_OF = {media: name for name, media in MEDIA_TYPES.items()}
BINARY = "application/octet-stream"


@dataclass(frozen=True)
class Choice:
    format: str  # png, webp, jpeg, avif
    media_type: str  # what the answer is labelled: the format's, or application/octet-stream when asked


def choose(accept: str | None, default: str) -> Choice:
    """What to answer a request with `accept`: among the most preferred ranges (highest q), the job's own
    `default` format if they take it, else the first format we make; the default when Accept names none
    (as RFC 9110 allows: never a 406 for a client that always sends one Accept)."""
    levels: dict[float, list[str]] = {}
    for part in (accept or "").split(","):
        media, *params = (p.strip().lower() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media and q > 0:
            levels.setdefault(q, []).append(media)
    for q in sorted(levels, reverse=True):
        ranges = levels[q]
        if {"*/*", "image/*", MEDIA_TYPES[default]} & set(ranges):
            return Choice(default, MEDIA_TYPES[default])
        for media in ranges:
            if media in FORMAT_OF:
                return Choice(FORMAT_OF[media], media)
            if media == BINARY:
                return Choice(default, BINARY)
    return Choice(default, MEDIA_TYPES[default])


def encoded_as(data: bytes, *, format: str, quality: int) -> bytes:
    """`data` (one of our pictures, in any format we make) as `format`, with the provenance it carries."""
    record = provenance.read(data)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return encode_image(image.convert("RGB"), format, record=record, quality=quality)


def result_file(storage: Storage, job_id: str, master: str, *, format: str, quality: int) -> str | None:
    """The name of the job's result file in `format`: the lossless `master` (the record's result_file) for PNG,
    else an encoding of it, made the first time it is asked for and kept beside it (a result never changes,
    and a print-sized AVIF takes seconds). None when the master is gone."""
    if format == "png":
        return master
    name = f"{master.rsplit('.', 1)[0]}-q{quality}.{format}"  # the winning attempt's, in this format
    if not storage.exists(job_id, name):
        data = storage.get(job_id, master)
        if data is None:
            return None
        storage.put(job_id, name, encoded_as(data, format=format, quality=quality))
    return name
