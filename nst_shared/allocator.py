"""glibc malloc settings for the processes that run the engine, which glibc reads only when a process starts."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

ENGINE_MALLOC_ENV: dict[str, str] = {
    # Blocks of 16 MiB and more (a 512 px image's larger activations) are mmapped, smaller ones come from the heap,
    # at a fixed threshold: glibc otherwise raises it as big blocks are freed, and the heap then fragments
    # (a warm worker's peak then grows with every job: bench/README.md).
    "MALLOC_MMAP_THRESHOLD_": str(16 * 2**20),
    # Those mmapped blocks on transparent huge pages: far fewer page faults when each iteration allocates its
    # activations anew (bench/README.md).
    "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
}


def with_engine_malloc(env: Mapping[str, str]) -> dict[str, str]:
    """`env` plus ENGINE_MALLOC_ENV, keeping any of those variables that `env` sets already."""
    return {**ENGINE_MALLOC_ENV, **env}


def restart_with_engine_malloc() -> None:
    """Replace this process with itself under ENGINE_MALLOC_ENV when that is missing (Linux, glibc only).

    For `nst run` and `nst-worker` (the worker image's command too); `nst up` starts its workers with them set.
    """
    if sys.platform != "linux" or all(name in os.environ for name in ENGINE_MALLOC_ENV):
        return
    os.execve(sys.executable, sys.orig_argv, with_engine_malloc(os.environ))
