"""The one engine of a worker process, built on first use and kept for the process's life."""

from __future__ import annotations

import importlib
import threading
from typing import Any

from nst_shared.settings import Settings

_engine: Any = None
_lock = threading.Lock()


def get_engine(settings: Settings, *, precision: str | None = None) -> Any:
    """Build the engine named by `settings.engine` (an import path "module:Class") once, then reuse it; in
    `precision` (worker.precision's decision) when given, else `settings.precision`."""
    global _engine
    with _lock:
        if _engine is None:
            module_name, _, class_name = settings.engine.partition(":")
            engine_class = getattr(importlib.import_module(module_name), class_name)
            _engine = engine_class(
                device=settings.device,
                precision=precision or settings.precision,
                memory_budget_bytes=int(settings.worker_memory_gb * 2**30) or None,
                cudnn_benchmark=settings.cudnn_benchmark,
            )
        return _engine
