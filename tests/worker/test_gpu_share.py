"""Worker processes on one GPU share its budget (a fake engine says it runs on a GPU with 20 GB free): two
started together each plan half of 90%, the API's capacity check sees those shares, and one too many exits."""

from __future__ import annotations

import signal
import subprocess
import sys

import redis

from nst_shared.presence import live_workers
from tests.conftest import ROOT, start_stack, wait_until

GIB = 2**30
GPU = {"engine": "tests.engines:SharedGpuEngine", "test_gpu_id": "GPU-fake-0", "test_gpu_free_bytes": 20 * GIB}


def test_workers_started_together_share_one_gpus_budget(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, workers=0, workers_per_gpu=2, **GPU)
    try:
        started = [
            subprocess.Popen(
                [sys.executable, "-m", "worker"],
                env=stack.env,
                cwd=ROOT,
                stdout=open(tmp_path / f"together-{i}.log", "wb"),
                stderr=subprocess.STDOUT,
            )
            for i in range(2)
        ]
        stack.workers.extend(started)
        client = redis.Redis.from_url(stack.redis_url)
        workers = wait_until(lambda: len(w := live_workers(client)) == 2 and w, timeout_s=60, what="two workers")
        assert sorted(int(w["memory_budget_bytes"]) for w in workers) == [9 * GIB, 9 * GIB]
        with stack.client() as api:
            engines = api.get("/readyz").json()["engines"]
            assert sorted(int(e["memory_budget_bytes"]) for e in engines) == [9 * GIB, 9 * GIB]
        third = subprocess.run(
            [sys.executable, "-m", "worker"], env=stack.env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert third.returncode != 0 and "no memory left on GPU GPU-fake-0" in third.stderr + third.stdout
        started[0].send_signal(signal.SIGTERM)  # a worker leaves: its share is free again
        assert started[0].wait(30) == 0
        stack.start_worker()
        assert sorted(int(w["memory_budget_bytes"]) for w in live_workers(client)) == [9 * GIB, 9 * GIB]
    finally:
        stack.stop()
