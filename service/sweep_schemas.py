"""The public shape of a sweep: its axes, each cell's job and progress, and the sweep's own progress."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from nst_shared.job_status import JobStatus
from nst_shared.jobs import JobRecord
from nst_shared.sweeps import SweepRecord, SweepStatus, counts, status_of
from service.schemas import JobError


class CellLinks(BaseModel):
    job: str
    result: str
    preview: str


class SweepCell(BaseModel):
    values: dict[str, str] = Field(description="The cell's values of the swept parameters.")
    job_id: str
    status: JobStatus | None = Field(description="The cell's job status; null once its job is gone (deleted).")
    step: int | None = None
    steps: int | None = None
    error: JobError | None = None
    links: CellLinks


class SweepProgress(BaseModel):
    cells: int
    ended: int = Field(description="Cells that succeeded, failed or were canceled (or whose job is gone).")
    queued: int
    running: int
    succeeded: int
    failed: int
    canceled: int
    fraction: float = Field(description="Of the sweep's work done: each cell's fraction, averaged.")


class SweepLinks(BaseModel):
    self: str
    sheet: str
    cancel: str


class SweepPublic(BaseModel):
    id: str
    status: SweepStatus
    created_at: datetime
    axes: dict[str, list[str]] = Field(description="Each swept parameter and its values, the first across the sheet.")
    cells: list[SweepCell]
    progress: SweepProgress
    links: SweepLinks


def public_sweep(
    sweep: SweepRecord, cells: list[JobRecord | None], *, tokens: dict[str, str] | None = None
) -> SweepPublic:
    """`tokens`: a signed link per id (the sweep's and each cell's), when API keys are on."""
    tokens = tokens or {}

    def signed(item_id: str) -> str:
        return f"?token={tokens[item_id]}" if item_id in tokens else ""

    public_cells = []
    fractions = []
    for cell, job in zip(sweep.cells, cells, strict=True):
        job_id = cell["job_id"]
        progress = (job.progress or {}) if job is not None else {}
        ended = job is None or job.status.terminal
        fractions.append(1.0 if ended else float(progress.get("fraction") or 0.0))
        base = f"/jobs/{job_id}"
        public_cells.append(
            SweepCell(
                values=cell["values"],
                job_id=job_id,
                status=job.status if job is not None else None,
                step=progress.get("step"),
                steps=progress.get("steps") or (job.params.get("steps") if job is not None else None),
                error=JobError(**job.error) if job is not None and job.error else None,
                links=CellLinks(
                    job=base, result=f"{base}/result{signed(job_id)}", preview=f"{base}/preview{signed(job_id)}"
                ),
            )
        )
    found = counts(cells)
    base = f"/sweeps/{sweep.id}"
    return SweepPublic(
        id=sweep.id,
        status=status_of(cells),
        created_at=datetime.fromtimestamp(sweep.created_at, tz=UTC),
        axes={axis.name: list(axis.values) for axis in sweep.axes},
        cells=public_cells,
        progress=SweepProgress(
            cells=len(cells),
            ended=found["succeeded"] + found["failed"] + found["canceled"] + found["gone"],
            queued=found["queued"],
            running=found["running"],
            succeeded=found["succeeded"],
            failed=found["failed"],
            canceled=found["canceled"],
            fraction=round(sum(fractions) / len(fractions), 4) if fractions else 1.0,
        ),
        links=SweepLinks(self=base, sheet=f"{base}/sheet{signed(sweep.id)}", cancel=f"{base}/cancel"),
    )
