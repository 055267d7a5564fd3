"""The fault trial of the one-command stack (bench/fault_bench.py) at a small scale: SIGKILLs of workers, the
API and Redis while jobs are submitted; every accepted job ends, none is lost or stuck, the stack recovers."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_stack_survives_sigkills_of_every_child():
    trial = subprocess.run(
        [
            sys.executable,
            "bench/fault_bench.py",
            "kills",
            "--seconds",
            "20",
            "--workers",
            "2",
            "--kill-every",
            "3",
            "--rate",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=500,
    )
    print(trial.stdout)  # the ledger, shown by pytest -s or on failure
    assert trial.returncode == 0, trial.stdout + trial.stderr[-3000:]
    assert "verdict:    OK" in trial.stdout
    kills = next(line for line in trial.stdout.splitlines() if line.startswith("kills:"))
    assert all(f"{role} " in kills for role in ("worker", "api", "redis"))
