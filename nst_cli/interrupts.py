"""Ctrl-C while `nst run` paints: the first asks the run to stop and keep what it has, a second gives up at once."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any


class Interrupts:
    """A context in which SIGINT sets `requested` (read by the progress callback) instead of raising."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> Interrupts:
        self._previous = signal.signal(signal.SIGINT, self._on_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
