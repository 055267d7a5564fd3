"""precision=auto on a CPU is decided once per machine (cached, under a lock) and shown by /readyz."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT, start_stack, wait_until
from worker.precision import machine_key

DECIDE = (
    "import logging, sys; logging.basicConfig(level='INFO', stream=sys.stdout); "
    "from worker.precision import decide_precision; from nst_shared.settings import Settings; "
    "d = decide_precision(Settings()); print('DECISION', d.precision, '|', d.reason)"
)


def decide(cache_home: Path, **settings: str) -> subprocess.Popen:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NST_")},
        "XDG_CACHE_HOME": str(cache_home),
        "NST_DEVICE": "cpu",
        **{f"NST_{k.upper()}": v for k, v in settings.items()},
    }
    return subprocess.Popen([sys.executable, "-c", DECIDE], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def decision(process: subprocess.Popen) -> tuple[str, str]:
    out = process.communicate(timeout=120)[0]
    assert process.returncode == 0, out
    line = next(line for line in out.splitlines() if line.startswith("DECISION"))
    return line.split()[1], out


def test_first_worker_measures_the_rest_read_the_cache(tmp_path):
    # Two workers starting at once: one measures under the lock, the other waits and reads its answer.
    both = [decide(tmp_path) for _ in range(2)]
    results = [decision(process) for process in both]
    assert results[0][0] == results[1][0] in ("fp32", "bf16")
    assert sum("measured bf16 at" in out for _, out in results) == 1
    cache = json.loads((tmp_path / "nst" / "cpu-precision.json").read_text())
    entry = cache[machine_key()]
    assert entry["precision"] == results[0][0] and entry["bf16_speedup"] > 0
    # The file decides from now on: flip it, and the next worker follows the file without measuring.
    flipped = "fp32" if entry["precision"] == "bf16" else "bf16"
    cache[machine_key()]["precision"] = flipped
    (tmp_path / "nst" / "cpu-precision.json").write_text(json.dumps(cache))
    precision, out = decision(decide(tmp_path))
    assert precision == flipped and "cached for this machine" in out and "measured bf16 at" not in out


def test_explicit_precision_needs_no_measurement(tmp_path):
    precision, out = decision(decide(tmp_path, precision="fp32"))
    assert precision == "fp32" and "NST_PRECISION" in out
    assert not (tmp_path / "nst").exists()


def test_readyz_shows_each_workers_precision_and_why(tmp_path, redis_server, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "cpu-precision.json").write_text(
        json.dumps({machine_key(): {"precision": "bf16", "bf16_speedup": 6.5, "measured_at": "2026-11-27 10:00:00"}})
    )
    monkeypatch.setenv("NST_CACHE_DIR", str(cache))  # the worker processes' environment
    stack = start_stack(tmp_path, redis_server.url, workers=1)
    try:
        [engine] = wait_until(
            lambda: httpx.get(f"{stack.url}/readyz").json().get("engines"), timeout_s=30, what="/readyz engines"
        )
        # The real engine, built in the cached format: every worker of this machine runs the same.
        assert (engine["device"], engine["precision"], engine["gpu"]) == ("cpu", "bf16", "")
        assert "6.5x" in engine["precision_reason"] and "cached" in engine["precision_reason"]
    finally:
        stack.stop()
