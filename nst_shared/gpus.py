"""Which GPU each worker process runs on when one host starts several (`nst up --workers N`): round robin over
the GPUs this host shows, one per worker through CUDA_VISIBLE_DEVICES, so two workers never crowd one GPU while
another idles. Torch-free: the parent process never initialises CUDA."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping


def visible_gpus(env: Mapping[str, str]) -> list[str]:
    """The GPUs a process started with `env` may use: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi
    lists (none without an NVIDIA driver)."""
    if "CUDA_VISIBLE_DEVICES" in env:
        ids = [part.strip() for part in env["CUDA_VISIBLE_DEVICES"].split(",")]
        # CUDA stops at the first id that is not a device (``, -1, NoDevFiles): so do we.
        visible = []
        for gpu in ids:
            if not gpu or gpu.startswith("-") or gpu.lower() == "nodevfiles":
                break
            visible.append(gpu)
        return visible
    nvidia_smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if not nvidia_smi:
        return []
    try:
        out = subprocess.run(
            [nvidia_smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()] if out.returncode == 0 else []


def worker_environments(count: int, env: Mapping[str, str], *, device: str) -> list[dict[str, str]]:
    """`count` environments for worker processes: on a host with several GPUs, worker i sees only GPU i mod n
    (it runs on `cuda`, its only GPU). One GPU, none, or a device named outright (cpu, mps, cuda:N): as given."""
    gpus = visible_gpus(env) if device in ("auto", "cuda") else []
    # Workers that land on one GPU split its memory (nst_shared/device_budget.py).
    share = {"NST_WORKERS_PER_GPU": str(-(-count // len(gpus)))} if gpus and count > len(gpus) else {}
    if len(gpus) < 2:
        return [{**env, **share} for _ in range(count)]
    return [{**env, **share, "CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} for i in range(count)]
