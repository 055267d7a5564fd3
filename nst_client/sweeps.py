"""Sweeps as the API shows them: a grid of cells, each a job of its own, as typed, frozen values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nst_client.jobs import JobError
from nst_shared.job_status import JobStatus


@dataclass(frozen=True)
class SweepCell:
    """One cell: its values of the swept parameters and its job (`job_id`, for `get`, `result`, `events`)."""

    values: dict[str, str]
    job_id: str
    status: JobStatus | None  # None once the cell's job is gone (deleted)
    step: int | None = None
    steps: int | None = None
    error: JobError | None = None


@dataclass(frozen=True)
class Sweep:
    """What `submit_sweep`, `get_sweep`, `cancel_sweep` and `wait_sweep` return."""

    id: str
    status: str  # running, completed
    axes: dict[str, list[str]]
    cells: list[SweepCell]
    progress: dict[str, Any]  # cells, ended, queued, running, succeeded, failed, canceled, fraction
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status == "completed"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sweep:
        cells = [
            SweepCell(
                values=cell["values"],
                job_id=cell["job_id"],
                status=JobStatus(cell["status"]) if cell.get("status") else None,
                step=cell.get("step"),
                steps=cell.get("steps"),
                error=JobError(cell["error"]["code"], cell["error"]["message"]) if cell.get("error") else None,
            )
            for cell in data["cells"]
        ]
        created = data.get("created_at")
        return cls(
            id=data["id"],
            status=data["status"],
            axes=data["axes"],
            cells=cells,
            progress=data.get("progress") or {},
            created_at=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
            raw=data,
        )


def axes_fields(axes: Mapping[str, Sequence[object]]) -> list[str]:
    """`{"style_weight": [5, 15, 45]}` as the form's `sweep` fields: `["style_weight=5,15,45"]`."""
    return [f"{name}={','.join(str(v) for v in values)}" for name, values in axes.items()]


def parse_sweep_flag(text: str) -> tuple[str, list[str]]:
    """`style_weight=5,15,45` (the CLI's --sweep) as (name, values); ValueError when it is not that."""
    name, sep, values = text.partition("=")
    parts = [v.strip() for v in values.split(",")]
    if not sep or not name.strip() or not all(parts):
        raise ValueError(f"--sweep {text!r}: expected name=value,value,... (e.g. style_weight=5,15,45)")
    return name.strip(), parts
