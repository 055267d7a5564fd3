"""The engine's parts on the GPU: a small transfer in fp32 and bf16, the fused ReLU+pool backward, the Gram
matrix, our L-BFGS, and stopping within one step."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from nst_core.features import _ReluMaxPool
from nst_core.lbfgs import LBFGS
from nst_core.losses import gram_matrix
from nst_core.progress import StopTransfer
from nst_core.transfer import StyleTransfer
from nst_shared.params import TransferParams
from tests.nst_core.conftest import picture
from tests.nst_core.test_lbfgs import quadratic

pytestmark = pytest.mark.gpu
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@pytest.fixture(scope="module", params=["fp32", "bf16"])
def engine(device, request) -> StyleTransfer:
    return StyleTransfer(device=device, precision=request.param)


def test_small_transfer_paints_on_the_device(engine, device, on_cuda):
    losses: list[float] = []
    width, steps = (128, 20) if on_cuda else (64, 6)  # the CPU dry run only checks the plumbing
    params = TransferParams(max_size=width, steps=steps, scales=1, seed=0)
    result = engine.stylize(
        picture(width, width * 3 // 4, 0), [picture(64, 64, 1)], params, callback=lambda p: losses.append(p.total_loss)
    )
    assert engine.device.type == torch.device(device).type
    assert result.image.size == (width, width * 3 // 4) and result.steps_done == steps == len(losses)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < 0.8 * losses[0]


def test_stop_transfer_ends_the_run_within_one_step(engine):
    seen: list[int] = []

    def stop_at_three(progress) -> None:
        seen.append(progress.step)
        if progress.step == 3:
            raise StopTransfer

    result = engine.stylize(
        picture(64, 48, 2),
        [picture(64, 64, 3)],
        TransferParams(max_size=64, steps=50, scales=1),
        callback=stop_at_three,
    )
    assert seen == [1, 2, 3] and result.steps_done == 3 and result.stopped and result.image.size == (64, 48)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_fused_relu_pool_backward_matches_autograd(device, dtype, memory_format):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 32, 38, 50, generator=gen).to(device, DTYPES[dtype]).contiguous(memory_format=memory_format)
    upstream = torch.randn(2, 32, 19, 25, generator=gen).to(device, DTYPES[dtype])
    fused_in, plain_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    fused = _ReluMaxPool.apply(fused_in)
    plain = F.max_pool2d(F.relu(plain_in), kernel_size=2, stride=2)
    assert torch.equal(fused, plain)
    (fused * upstream).sum().backward()
    (plain * upstream).sum().backward()
    assert torch.equal(fused_in.grad, plain_in.grad) and plain_in.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype, tolerance", [("fp32", 2e-3), ("bf16", 2e-2)])  # fp32 matmuls may run in TF32
def test_gram_matrix_and_its_backward_against_float64(device, dtype, tolerance):
    gen = torch.Generator().manual_seed(1)
    features = torch.rand(1, 64, 24, 40, generator=gen)
    weight = torch.rand(64, 64, generator=gen)
    on_device = features.to(device, DTYPES[dtype]).contiguous(memory_format=torch.channels_last).requires_grad_()
    gram = gram_matrix(on_device)
    assert gram.dtype == torch.float32 and gram.device.type == torch.device(device).type
    (gram * weight.to(device)).sum().backward()
    reference = features.double().requires_grad_()
    flat = reference.reshape(1, 64, -1)
    ref_gram = flat @ flat.transpose(1, 2) / flat[0].numel()
    (ref_gram * weight.double()).sum().backward()

    def relative(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a.double().cpu() - b).norm() / b.norm())

    assert relative(gram.detach(), ref_gram.detach()) < tolerance
    assert relative(on_device.grad, reference.grad) < tolerance


def test_lbfgs_on_the_device_follows_the_cpu(device):
    gen = torch.Generator().manual_seed(0)
    weights = 10 ** torch.empty(500).uniform_(-1, 1, generator=gen)
    centre = torch.empty(500).uniform_(0.1, 0.9, generator=gen)
    finals = {}
    for where in ("cpu", device):
        x = torch.full((500,), 0.5, device=where, requires_grad=True)
        closure = quadratic(weights.to(where), centre.to(where))(x)
        optimizer = LBFGS(x, history_size=10)
        for _ in range(60):
            optimizer.step(closure)
        finals[where] = x.detach().cpu()
    assert torch.allclose(finals[device], centre, atol=1e-4)
    assert torch.allclose(finals[device], finals["cpu"], atol=1e-5)


def test_an_lbfgs_step_never_waits_for_the_device(device, on_cuda):
    """Every decision of a step stays on the device (issue 27): on CUDA, any synchronisation inside a step is an
    error here (the first step, which only measures, included)."""
    gen = torch.Generator().manual_seed(0)
    weights = (10 ** torch.empty(5000).uniform_(-1, 1, generator=gen)).to(device)
    x = torch.rand(5000, generator=gen).to(device).requires_grad_(True)
    optimizer = LBFGS(x, history_size=4)
    closure = quadratic(weights, torch.full_like(weights, 0.5))(x)
    start = float((weights * (x.detach() - 0.5) ** 2).sum())
    if on_cuda:
        torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(8):  # fills the history and goes round its ring
            optimizer.step(closure)
    finally:
        if on_cuda:
            torch.cuda.set_sync_debug_mode("default")
    assert optimizer.pairs == 4 and optimizer.loss < 0.1 * start


def test_bf16_is_asked_of_the_device_itself(device, on_cuda):
    from nst_core.precision import cuda_has_bf16

    if not on_cuda:
        pytest.skip("a CUDA device's own answer")
    assert cuda_has_bf16(torch.device(device)) == torch.cuda.is_bf16_supported(including_emulation=False)
