"""The one engine of a worker process, built on first use and kept for the process's life."""

from __future__ import annotations

import importlib
import threading
from typing import Any

from nst_shared.settings import Settings

_engine: Any = None
_lock = threading.Lock()


def engine_class(settings: Settings) -> Any:
    """The class `settings.engine` names ("module:Class")."""
    module_name, _, class_name = settings.engine.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def get_engine(settings: Settings, *, precision: str | None = None, memory_budget_bytes: int | None = None) -> Any:
    """Build the engine named by `settings.engine` once, then reuse it; in `precision` (worker.precision's
    decision) when given, else `settings.precision`; with `memory_budget_bytes` (a share of a GPU the worker
    shares, worker/main.py) when given, else NST_WORKER_MEMORY_GB, else the engine's default."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = engine_class(settings)(
                device=settings.device,
                precision=precision or settings.precision,
                memory_budget_bytes=memory_budget_bytes or int(settings.worker_memory_gb * 2**30) or None,
                cudnn_benchmark=settings.cudnn_benchmark,
            )
        return _engine
