"""`nst up --workers N` on a host with several GPUs: each worker on its own GPU, in turn (shown by /readyz)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx

from tests.conftest import ROOT, free_port, wait_until
from worker.precision import machine_key


def test_nst_up_places_workers_round_robin(tmp_path):
    cache = tmp_path / "cache" / "nst"
    cache.mkdir(parents=True)  # the machine's precision decided already: the workers start without measuring
    (cache / "cpu-precision.json").write_text(
        json.dumps({machine_key(): {"precision": "fp32", "bf16_speedup": 1.0, "measured_at": "2026-11-27 10:00:00"}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NST_")}
    # Two GPUs to share out; this machine has none, so the workers run on the CPU (device auto) with the fake engine.
    env.update(
        NST_STORAGE_DIR=str(tmp_path / "storage"),
        NST_ENGINE="tests.engines:InstantEngine",
        CUDA_VISIBLE_DEVICES="0,1",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "nst_cli.main", "up", "--port", str(port), "--workers", "3"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def engines():
            try:
                found = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json().get("engines") or []
            except httpx.HTTPError:
                return None
            return found if len(found) == 3 else None

        found = wait_until(engines, timeout_s=120, interval_s=0.5, what="three workers ready")
        assert sorted(engine["gpu"] for engine in found) == ["0", "0", "1"]
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0, output
