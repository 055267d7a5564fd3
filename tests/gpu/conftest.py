"""The device the `gpu` tests run on: CUDA, or what GPU_TEST_DEVICE names (bench/gpu_check.sh's dry run on the
CPU sets it to cpu, so the same tests check their own plumbing where there is no GPU)."""

from __future__ import annotations

import os

import pytest

DEVICE = os.environ.get("GPU_TEST_DEVICE", "cuda")


@pytest.fixture(scope="session")
def device() -> str:
    import torch

    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("no CUDA device here: bench/gpu_check.sh runs these on a GPU machine")
    return DEVICE


@pytest.fixture(scope="session")
def on_cuda(device) -> bool:
    return device.startswith("cuda")
