"""A small Server-Sent Events reader for the tests."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx


def read_events(response: httpx.Response) -> Iterator[tuple[str | None, str, dict]]:
    """(id, event, data) for each event of a streaming response; comments are skipped."""
    event_id, event, data = None, "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event_id, event, json.loads("\n".join(data))
            event_id, event, data = None, "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                event_id = value
            elif name == "event":
                event = value
            elif name == "data":
                data.append(value)
