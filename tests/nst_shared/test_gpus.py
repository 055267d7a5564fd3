"""Round-robin placement of a host's workers over its GPUs."""

from __future__ import annotations

import os
import stat

from nst_shared.gpus import visible_gpus, worker_environments


def fake_nvidia_smi(tmp_path, indices: list[int]) -> str:
    """A PATH holding an `nvidia-smi` that lists these GPU indices, as the real one's CSV query does."""
    program = tmp_path / "nvidia-smi"
    lines = "\\n".join(str(i) for i in indices)
    program.write_text(f'#!/bin/sh\n[ "$1" = "--query-gpu=index" ] && printf "{lines}\\n"\n')
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return f"{tmp_path}:{os.environ['PATH']}"


def gpus_of(envs: list[dict[str, str]]) -> list[str | None]:
    return [env.get("CUDA_VISIBLE_DEVICES") for env in envs]


def test_workers_take_the_gpus_in_turn():
    env = {"CUDA_VISIBLE_DEVICES": "2,3,5", "KEEP": "1"}
    envs = worker_environments(5, env, device="auto")
    assert gpus_of(envs) == ["2", "3", "5", "2", "3"]
    assert all(e["KEEP"] == "1" for e in envs) and env["CUDA_VISIBLE_DEVICES"] == "2,3,5"  # the input unchanged


def test_gpus_listed_by_nvidia_smi_when_nothing_restricts_them(tmp_path):
    path = fake_nvidia_smi(tmp_path, [0, 1, 2, 3, 4, 5, 6, 7])
    assert visible_gpus({"PATH": path}) == [str(i) for i in range(8)]
    assert gpus_of(worker_environments(8, {"PATH": path}, device="cuda")) == [str(i) for i in range(8)]
    assert gpus_of(worker_environments(3, {"PATH": path}, device="cuda")) == ["0", "1", "2"]


def test_one_gpu_none_or_a_named_device_changes_nothing(tmp_path):
    assert gpus_of(worker_environments(2, {"PATH": fake_nvidia_smi(tmp_path, [0])}, device="auto")) == [None, None]
    assert gpus_of(worker_environments(2, {"PATH": str(tmp_path / "empty")}, device="auto")) == [None, None]
    for device in ("cpu", "cuda:1", "mps"):  # named outright: the operator placed them
        assert gpus_of(worker_environments(2, {"CUDA_VISIBLE_DEVICES": "0,1"}, device=device)) == ["0,1", "0,1"]


def test_cuda_stops_at_the_first_invalid_id():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-8f3c,GPU-11aa"}) == ["GPU-8f3c", "GPU-11aa"]


def test_workers_that_share_a_gpu_are_told_how_many_share_it(tmp_path):
    envs = worker_environments(3, {"CUDA_VISIBLE_DEVICES": "0,1"}, device="auto")
    assert [e["NST_WORKERS_PER_GPU"] for e in envs] == ["2", "2", "2"]  # GPU 0 runs two of them
    one_gpu = worker_environments(2, {"PATH": fake_nvidia_smi(tmp_path, [0])}, device="auto")
    assert [e["NST_WORKERS_PER_GPU"] for e in one_gpu] == ["2", "2"]
    assert "NST_WORKERS_PER_GPU" not in worker_environments(2, {"CUDA_VISIBLE_DEVICES": "0,1"}, device="auto")[0]
    assert "NST_WORKERS_PER_GPU" not in worker_environments(2, {"PATH": str(tmp_path / "empty")}, device="auto")[0]
