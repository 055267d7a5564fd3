"""The number format a worker's engine runs in, decided once per machine.

`precision=auto` on a CPU times a bf16 convolution against float32 (~0.1 s, nst_core/precision.py). Timed at
every worker start, workers of one deployment could decide differently while another process loads the cores;
so the first worker of a machine decides, under a file lock, and writes the answer to a cache file keyed by CPU
model and torch version; every later worker and restart reads it. Delete the file (or set NST_PRECISION) to
decide again. GPUs decide from what the device reports, which needs no cache.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nst_shared.settings import Settings

log = logging.getLogger("nst.worker")


@dataclass(frozen=True)
class Decision:
    """The precision to build the engine with, and why (logged, and shown by /readyz)."""

    precision: str
    reason: str


def cache_file(settings: Settings) -> Path:
    """NST_CACHE_DIR's file (the tests point it at a temporary folder), else the user's cache folder's."""
    folder = settings.cache_dir or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nst"
    return Path(folder) / "cpu-precision.json"


def machine_key() -> str:
    """What the CPU measurement depends on: the processor model and the torch build."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "none"
    return f"{model} | torch {torch_version}"


def decide_precision(settings: Settings) -> Decision:
    """NST_PRECISION as set; for `auto` on a CPU worker, this machine's cached decision (measured once)."""
    if settings.precision != "auto":
        return Decision(settings.precision, "NST_PRECISION")
    if settings.device not in ("auto", "cpu") or (settings.device == "auto" and _has_accelerator()):
        return Decision("auto", f"auto on {settings.device}: the engine asks the device")
    return _cached_cpu_decision(cache_file(settings), machine_key())


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def _cached_cpu_decision(path: Path, key: str) -> Decision:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker measures; the others wait for its answer
        cached = _read(path)
        if key in cached:
            entry = cached[key]
            return Decision(
                entry["precision"],
                f"auto on this CPU: bf16 measured {entry['bf16_speedup']:.1f}x "
                f"float32's speed on {entry['measured_at']} (cached for this machine)",
            )
        import torch

        from nst_core.precision import cpu_bf16_speedup, resolve_precision

        precision = resolve_precision("auto", torch.device("cpu"))
        speedup = cpu_bf16_speedup()  # the measurement resolve_precision just made (cached in-process)
        entry = {
            "precision": precision,
            "bf16_speedup": round(speedup, 2),
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        cached[key] = entry
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(cached, indent=1))
        temporary.replace(path)
        log.info("measured bf16 at %.1fx float32's speed on this CPU: %s from now on (%s)", speedup, precision, path)
        return Decision(
            precision,
            f"auto on this CPU: bf16 measured {speedup:.1f}x float32's speed just now (cached for this machine)",
        )


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
