"""A storage that takes no writes is an outage of the storage, not our bug: 507 (or 503) with Retry-After,
nothing left behind, and counted in the metrics."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import start_stack
from tests.service.test_jobs import submit


def noise_png(side: int, seed: int) -> bytes:
    """A PNG that does not compress: `side`^2 x 3 bytes of noise (about 1 MB at 600 px)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=0)
    return out.getvalue()


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 3 MB filesystem (tmpfs), unmounted afterwards; needs root, as CI has."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_submit_job_on_a_full_disk_507_and_nothing_left(tmp_path, redis_server, small_disk):
    stack = start_stack(tmp_path, redis_server.url, workers=0, storage_dir=small_disk / "storage")
    try:
        with stack.client() as client:
            answers = [submit(client, content=noise_png(600, seed), max_size="64") for seed in range(8)]
            statuses = [a.status_code for a in answers]
            assert set(statuses) == {202, 507}, statuses
            refused = [a for a in answers if a.status_code == 507]
            assert all(a.json()["error"]["code"] == "storage_full" and a.headers["Retry-After"] for a in refused)
            accepted = {a.json()["id"] for a in answers if a.status_code == 202}
            storage = small_disk / "storage"
            assert {p.name for p in storage.iterdir()} == accepted  # the refused ones' files are gone
            assert not list(storage.rglob(".tmp-*"))
            jobs = client.get("/jobs", params={"limit": 100}).json()["items"]
            assert {j["id"] for j in jobs} == accepted  # and so are their records
            metrics = client.get("/metrics").text
            assert f'nst_storage_refusals_total{{code="storage_full"}} {float(len(refused))}' in metrics
    finally:
        stack.stop()
