"""The supervisor of `nst up`'s children, on real short-lived processes and a clock the test moves."""

from __future__ import annotations

import subprocess
import sys

from nst_cli.supervisor import Child


def test_child_is_restarted_with_a_doubling_pause_while_it_keeps_dying(capsys):
    now = [0.0]
    starts = []

    def start() -> subprocess.Popen:
        starts.append(now[0])
        return subprocess.Popen([sys.executable, "-c", "pass"])  # dies at once, as a broken child does

    child = Child("flaky", start, clock=lambda: now[0])
    pauses = []
    for _ in range(7):
        child.process.wait()
        child.supervise()  # notices the death
        pauses.append(child.pause_s)
        now[0] += child.pause_s
        child.supervise()  # restarts once the pause is over
    assert pauses == [0, 1, 2, 4, 8, 16, 30]
    assert len(starts) == 8 and child.restarts == 7
    child.process.wait()
    now[0] += 3600  # an hour after its start: it did not die young, so it is restarted at once
    child.supervise()
    assert child.pause_s == 0 and child.restarts == 8
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("nst up: flaky (pid ") and "restarting" in lines[0]
    assert "restarting in 2 s (it keeps dying)" in "\n".join(lines)
