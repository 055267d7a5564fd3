"""The number format the network runs in: float32, or bfloat16 where the device multiplies it much faster.

In bf16 the convolutions and the activations are bf16 (half the memory too); the image, the L-BFGS state and the
losses are float32, and the Gram matrices are bf16 products (summed in float32, rounded to bf16) widened to
float32. The gradient then carries ~7% rounding noise, which torch's L-BFGS could not take (its tiny first step
learns curvature from noise: nst_core/lbfgs.py); with our L-BFGS the bf16 network reaches the same float32
objective in the same number of iterations, each several times faster on a CPU with AMX (bench/README.md), and
the pictures look the same.
"""

from __future__ import annotations

import functools
import time

import torch
from torch.nn import functional as F

from nst_shared.errors import InvalidParameter
from nst_shared.params import PRECISIONS

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# bf16 is picked only when it is clearly faster: a CPU without bf16 matrix units (AVX-512 only) runs bf16
# convolutions at about the float32 rate or slower, and then the precision is not worth losing.
MIN_CPU_SPEEDUP = 1.5


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' picks bf16 on GPUs that have it (Ampere and later, ROCm), and on CPUs whose bf16 convolutions
    measure at least 1.5x faster than float32 (AMX); float32 elsewhere, MPS included."""
    if name not in PRECISIONS:
        raise InvalidParameter(f"unknown precision {name!r}: use auto, fp32 or bf16", field="precision")
    if device.type == "cuda":
        has_bf16 = cuda_has_bf16(device)
        if name == "bf16" and not has_bf16:
            raise InvalidParameter(
                "bf16 was asked for but this GPU has no bf16 arithmetic (before Ampere); use fp32", field="precision"
            )
        return name if name != "auto" else ("bf16" if has_bf16 else "fp32")
    if name != "auto":
        return name
    if device.type == "cpu":
        return "bf16" if cpu_bf16_speedup() >= MIN_CPU_SPEEDUP else "fp32"
    return "fp32"


def cuda_has_bf16(device: torch.device) -> bool:
    """Whether `device` itself multiplies bf16 natively: torch.cuda.is_bf16_supported answers for the current
    device, which on a host of mixed cards need not be the worker's NST_DEVICE=cuda:N."""
    if torch.version.hip:
        return True
    return bool(torch.cuda.get_device_properties(device).major >= 8)  # Ampere and later


def fp32_matmul_mode(requested: str, resolved: str) -> str:
    """How float32 convolutions and products run on a GPU: TF32 (10-bit mantissa on tensor cores) only when the
    precision was left to the engine; fp32 asked for explicitly is IEEE float32. bf16 runs keep their float32
    algebra (the L-BFGS history products, memory-bound anyway) in IEEE float32."""
    return "tf32" if requested == "auto" and resolved == "fp32" else "ieee"


def apply_fp32_matmul_mode(mode: str) -> None:
    """Sets the process's float32 mode for cuBLAS and cuDNN convolutions, with torch's per-backend flags (2.9 and
    later; the allow_tf32 flags they replace are deprecated, and mixing the two APIs raises)."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.conv.fp32_precision = mode  # type: ignore[attr-defined]  # set at import by torch
    else:  # pragma: no cover - torch before 2.9
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        torch.backends.cudnn.allow_tf32 = mode == "tf32"


@functools.cache
def cpu_bf16_speedup() -> float:
    """How much faster this CPU runs a VGG-sized convolution in bf16 than in float32 (~0.1 s to measure).

    Measured rather than read from CPU flags: what matters is the speed oneDNN gets, which flags only hint at
    (AVX512-BF16 without AMX runs bf16 no faster; bench/README.md). On one thread, interleaved, best of several:
    another process busy on the other cores (a second worker starting) then slows both formats alike."""
    x = torch.rand(1, 128, 64, 64).contiguous(memory_format=torch.channels_last)
    w = torch.rand(128, 128, 3, 3).contiguous(memory_format=torch.channels_last)
    inputs = {dtype: (x.to(dtype), w.to(dtype)) for dtype in (torch.float32, torch.bfloat16)}
    best = {dtype: float("inf") for dtype in inputs}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for _ in range(6):  # the first round builds oneDNN's kernels
                for dtype, (xd, wd) in inputs.items():
                    started = time.perf_counter()
                    F.conv2d(xd, wd, padding=1)
                    best[dtype] = min(best[dtype], time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return best[torch.float32] / best[torch.bfloat16]
