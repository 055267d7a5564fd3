"""A stored file as an HTTP answer, read in chunks (never whole) and by Range: one byte range per request
(bytes=a-b, a- or -n; a list of ranges gets the whole file, as RFC 9110 allows); 416 for a range past the end."""

from __future__ import annotations

import re
from collections.abc import Iterator

from fastapi.responses import StreamingResponse

from nst_shared.storage import StoredFile
from service.errors import ApiError

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def file_response(
    stored: StoredFile, *, range_header: str | None, media_type: str, headers: dict[str, str]
) -> StreamingResponse:
    """200 with the whole file, or 206 with the one range asked for; the file is closed once sent."""
    size = stored.size
    try:
        span = _span(range_header, size) if range_header else None
    except ApiError:
        stored.close()
        raise
    start, end = span if span is not None else (0, size)
    answer = {**headers, "Accept-Ranges": "bytes", "Content-Length": str(end - start)}
    if span is not None:
        answer["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return StreamingResponse(
        _sent(stored, start, end), status_code=206 if span else 200, media_type=media_type, headers=answer
    )


def _span(header: str, size: int) -> tuple[int, int] | None:
    """[start, end) of a single satisfiable range; None for a header we answer with the whole file."""
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last n bytes
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        raise ApiError(
            416, "range_not_satisfiable", f"the file has {size} bytes", headers={"Content-Range": f"bytes */{size}"}
        )
    return start, end


def _sent(stored: StoredFile, start: int, end: int) -> Iterator[bytes]:
    try:
        yield from stored.chunks(start, end)
    finally:
        stored.close()
