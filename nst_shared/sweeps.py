"""Sweeps: one submission that paints a grid over up to two parameters, each cell a job of its own on the queue.

The sweep's record (a Redis hash) names its axes and its cells' job ids; everything else about a cell (status,
progress, result, provenance) is the cell's own job record, read when the sweep is read. A sweep's axes are
written `name=v1,v2,v3`; a value is checked as the parameter model checks that field.
"""

from __future__ import annotations

import enum
import itertools
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from nst_shared.errors import InvalidParameter
from nst_shared.job_status import JobStatus
from nst_shared.jobs import JobRecord, new_job_id
from nst_shared.keys import Keys
from nst_shared.params import api_fields
from nst_shared.redis_connection import texts

MAX_AXES = 2  # "one or two" in messages
# The axis of the style images themselves: its values are 1-based indexes of the uploaded styles, and each cell
# paints with its one style (and that style's mask).
STYLE_AXIS = "style"
QUEUED_SLACK_S = 24 * 3600
# style_blend is itself comma-separated; seed and preview_every change no picture worth comparing side by side.
NOT_SWEPT = frozenset({"style_blend", "preview_every", "preserve_colors"})


class SweepStatus(str, enum.Enum):
    RUNNING = "running"  # some cell is queued or running
    COMPLETED = "completed"  # every cell has ended (succeeded, failed or canceled: the counts say which)


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[str, ...]

    def text(self) -> str:
        return f"{self.name}={','.join(self.values)}"


def parse_axis(text: str) -> Axis:
    """`name=v1,v2,...` as an Axis; InvalidParameter (field `sweep`) for anything else. The values stay text:
    each cell's parameters are validated as a form's would be."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise InvalidParameter(f"sweep: {text!r} is not name=value,value,...", field="sweep")
    if name != STYLE_AXIS and (name not in api_fields() or name in NOT_SWEPT):
        sweepable = ", ".join([STYLE_AXIS, *(n for n in api_fields() if n not in NOT_SWEPT)])
        raise InvalidParameter(f"sweep: {name!r} cannot be swept (any of {sweepable})", field="sweep")
    parts = tuple(v.strip() for v in values.split(","))
    if not parts or any(not v for v in parts):
        raise InvalidParameter(f"sweep: {name} needs values separated by commas", field="sweep")
    if name == STYLE_AXIS and not all(v.isdigit() and int(v) >= 1 for v in parts):
        raise InvalidParameter("sweep: style takes the style images' numbers, 1, 2, ... in upload order", field="sweep")
    if len(set(parts)) != len(parts):
        raise InvalidParameter(f"sweep: {name} repeats a value", field="sweep")
    return Axis(name, parts)


def parse_axes(texts: Iterable[str], *, max_cells: int) -> list[Axis]:
    """The sweep's axes (one or two, different parameters, at most `max_cells` cells in all)."""
    texts = list(texts)
    if not 1 <= len(texts) <= MAX_AXES:
        raise InvalidParameter(f"sweep: one or two axes (sweep fields), not {len(texts)}", field="sweep")
    axes = [parse_axis(t) for t in texts]
    if len({a.name for a in axes}) != len(axes):
        raise InvalidParameter("sweep: the two axes must be different parameters", field="sweep")
    cells = 1
    for axis in axes:
        cells *= len(axis.values)
    if cells > max_cells:
        raise InvalidParameter(f"sweep: {cells} cells; at most {max_cells} (NST_MAX_SWEEP_CELLS)", field="sweep")
    return axes


def cell_values(axes: list[Axis]) -> list[dict[str, str]]:
    """Every cell's values, row by row: the first axis varies fastest (it runs across the contact sheet)."""
    grid = itertools.product(*(axis.values for axis in reversed(axes)))
    return [{a.name: v for a, v in zip(axes, reversed(combo), strict=True)} for combo in grid]


@dataclass
class SweepRecord:
    id: str
    created_at: float
    axes: list[Axis]
    cells: list[dict[str, Any]]  # {"values": {name: text}, "job_id": id}
    owner: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_hash(self) -> dict[str, str]:
        return {
            "id": self.id,
            "created_at": repr(self.created_at),
            "axes": json.dumps([[a.name, list(a.values)] for a in self.axes]),
            "cells": json.dumps(self.cells),
            "owner": self.owner or "",
            "extra": json.dumps(self.extra),
        }

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> SweepRecord:
        return cls(
            id=data["id"],
            created_at=float(data["created_at"]),
            axes=[Axis(name, tuple(values)) for name, values in json.loads(data["axes"])],
            cells=json.loads(data["cells"]),
            owner=data.get("owner") or None,
            extra=json.loads(data.get("extra") or "{}"),
        )

    @property
    def job_ids(self) -> list[str]:
        return [cell["job_id"] for cell in self.cells]


def new_sweep(axes: list[Axis], *, owner: str | None, extra: dict[str, Any] | None = None) -> SweepRecord:
    return SweepRecord(
        id=new_job_id(),
        created_at=time.time(),
        axes=axes,
        cells=[{"values": values, "job_id": new_job_id()} for values in cell_values(axes)],
        owner=owner,
        extra=extra or {},
    )


class SweepStore:
    """Sweep records in Redis; their cells are jobs (nst_shared/jobs.py)."""

    def __init__(self, connection: redis.Redis, *, ttl_s: int) -> None:
        self.redis, self.ttl_s = connection, ttl_s

    def create_in(self, pipeline: Any, record: SweepRecord) -> None:
        """Queue the record's write on `pipeline` (the transaction that queues its cells). It lives a day longer
        than a finished job (its cells' retention starts when they end); cells gone before it read as gone."""
        pipeline.hset(Keys.sweep(record.id), mapping=record.to_hash())
        pipeline.expire(Keys.sweep(record.id), self.ttl_s + QUEUED_SLACK_S)

    def get(self, sweep_id: str) -> SweepRecord | None:
        data = self.redis.hgetall(Keys.sweep(sweep_id))
        if not data:
            return None
        return SweepRecord.from_hash(texts(data))

    def exists(self, sweep_id: str) -> bool:
        return bool(self.redis.exists(Keys.sweep(sweep_id)))

    def delete(self, sweep_id: str) -> None:
        self.redis.delete(Keys.sweep(sweep_id))

    def cells(self, record: SweepRecord) -> list[JobRecord | None]:
        """Each cell's job record, in the sweep's order (None for a cell whose job is gone), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in record.job_ids:
            pipe.hgetall(Keys.job(job_id))
        return [JobRecord.from_hash(texts(data)) if data else None for data in pipe.execute()]


def status_of(cells: list[JobRecord | None]) -> SweepStatus:
    ended = all(cell is None or cell.status.terminal for cell in cells)
    return SweepStatus.COMPLETED if ended else SweepStatus.RUNNING


def counts(cells: list[JobRecord | None]) -> dict[str, int]:
    """How many cells are in each status (a cell whose job is gone counts as `gone`)."""
    found = {status.value: 0 for status in JobStatus}
    found["gone"] = 0
    for cell in cells:
        found[cell.status.value if cell is not None else "gone"] += 1
    return found
