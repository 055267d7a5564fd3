"""A sweep's contact sheet: its cells' results side by side in a PNG, the first axis across and the second down,
each labelled with its values, the sheet carrying the sweep's provenance (each cell's record and what they share)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from nst_shared import provenance
from nst_shared.images import encode_image, fit_size, resize
from nst_shared.sweeps import SweepRecord

TILE_PX = 256  # a cell's picture fits this square
LABEL_PX = 22
GAP_PX = 8
BACKGROUND, INK, MISSING = (255, 255, 255), (29, 35, 48), (225, 228, 235)


@dataclass(frozen=True)
class Cell:
    values: dict[str, str]
    job_id: str
    status: str
    result: bytes | None  # the cell's result file (a PNG with its provenance), when it succeeded


def build(sweep: SweepRecord, cells: list[Cell]) -> bytes:
    """The sheet as PNG bytes."""
    columns = len(sweep.axes[0].values)
    rows = -(-len(cells) // columns)
    font = ImageFont.load_default(size=13)
    width = columns * TILE_PX + (columns + 1) * GAP_PX
    height = rows * (TILE_PX + LABEL_PX) + (rows + 1) * GAP_PX
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    records: list[dict[str, Any] | None] = []
    for index, cell in enumerate(cells):
        row, column = divmod(index, columns)
        left = GAP_PX + column * (TILE_PX + GAP_PX)
        top = GAP_PX + row * (TILE_PX + LABEL_PX + GAP_PX)
        record = provenance.read(cell.result) if cell.result is not None else None
        records.append(record)
        if cell.result is not None:
            with Image.open(io.BytesIO(cell.result)) as picture:
                tile = resize(picture.convert("RGB"), fit_size(*picture.size, TILE_PX))
            # Centred across, on its label: a landscape picture's spare height goes above it.
            sheet.paste(tile, (left + (TILE_PX - tile.width) // 2, top + TILE_PX - tile.height))
        else:
            draw.rectangle((left, top, left + TILE_PX - 1, top + TILE_PX - 1), fill=MISSING)
            draw.text((left + TILE_PX // 2, top + TILE_PX // 2), cell.status, fill=INK, font=font, anchor="mm")
        label = "   ".join(f"{name}={value}" for name, value in cell.values.items())
        draw.text((left + TILE_PX // 2, top + TILE_PX + LABEL_PX // 2), label, fill=INK, font=font, anchor="mm")
    return encode_image(sheet, "PNG", record=sheet_record(sweep, cells, records))


def sheet_record(sweep: SweepRecord, cells: list[Cell], records: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The sheet's provenance: the parameters its cells share (`nst info` reads them as any picture's), the axes,
    and each cell's own record."""
    swept = {axis.name for axis in sweep.axes}
    found = [r for r in records if r is not None]
    shared = {k: v for k, v in found[0]["params"].items() if k not in swept and k != "seed"} if found else {}
    return {
        "engine": {"name": provenance.PACKAGE, "version": provenance.engine_version()},
        "params": shared,
        "sweep": {
            "id": sweep.id,
            "axes": {axis.name: list(axis.values) for axis in sweep.axes},
            "cells": [
                {"values": cell.values, "job_id": cell.job_id, "status": cell.status, "record": record}
                for cell, record in zip(cells, records, strict=True)
            ],
        },
    }
