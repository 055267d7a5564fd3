"""Keeping `nst up`'s children running: each is started again when it exits, at once the first time, then
after a pause that doubles (1 s to 30 s) while it keeps dying soon after each start; each restart is said."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

STABLE_S = 10.0  # a child that ran this long before it died had started fine: it is not "dying young"
FIRST_PAUSE_S = 1.0
MAX_PAUSE_S = 30.0


def say(line: str) -> None:
    print(f"nst up: {line}", file=sys.stderr, flush=True)


class Child:
    """One supervised process, started by `start`; call `supervise()` often."""

    def __init__(
        self, name: str, start: Callable[[], subprocess.Popen[bytes]], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name, self._start, self._clock = name, start, clock
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._quick_deaths = 0
        self._started_at = clock()
        self._restart_at: float | None = None
        self._launch()

    @property
    def pause_s(self) -> float:
        """The pause before the next restart, given how many times in a row the child died young."""
        if self._quick_deaths <= 1:
            return 0.0
        return min(MAX_PAUSE_S, FIRST_PAUSE_S * 2.0 ** (self._quick_deaths - 2))

    def supervise(self) -> None:
        """Notice the child's exit, and start it again once its pause is over."""
        now = self._clock()
        if self._restart_at is None:
            code = self.process.poll() if self.process is not None else -1
            if code is None:
                return
            lived_s = now - self._started_at
            self._quick_deaths = self._quick_deaths + 1 if lived_s < STABLE_S else 0
            pid = self.process.pid if self.process is not None else "-"
            pause = f" in {self.pause_s:.0f} s (it keeps dying)" if self.pause_s else ""
            say(f"{self.name} (pid {pid}) exited with {code} after {lived_s:.1f} s; restarting{pause}")
            self._restart_at = now + self.pause_s
        if now >= self._restart_at:
            self._restart_at = None
            self.restarts += 1
            self._launch()
            if self.process is not None:
                say(f"{self.name} restarted (pid {self.process.pid})")

    def _launch(self) -> None:
        self._started_at = self._clock()
        try:
            self.process = self._start()
        except OSError as exc:  # cannot even start: counts as dying young
            say(f"{self.name} could not start: {exc}")
            self.process = None
