"""The bf16 network: features close to float32's, float32 losses, the choice of precision, a full transfer."""

from __future__ import annotations

import pytest
import torch

from nst_core.features import build_vgg19
from nst_core.losses import gram_matrix, widen
from nst_core.precision import apply_fp32_matmul_mode, cpu_bf16_speedup, fp32_matmul_mode, resolve_precision
from nst_core.tensors import image_to_tensor
from nst_core.transfer import StyleTransfer
from nst_shared.errors import InvalidParameter
from nst_shared.params import TransferParams
from tests.nst_core.conftest import picture

LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]


@pytest.fixture(scope="module")
def networks():
    return build_vgg19("caffe"), build_vgg19("caffe").set_compute_dtype(torch.bfloat16)


def test_bf16_features_are_close_to_float32_and_the_grams_come_out_float32(networks):
    fp32, bf16 = networks
    image = image_to_tensor(picture(96, 80))
    with torch.no_grad():
        exact, rounded = fp32(image, LAYERS), bf16(image, LAYERS)
    for name in LAYERS:
        assert rounded[name].dtype == torch.bfloat16
        error = (rounded[name].float() - exact[name]).norm() / exact[name].norm()
        assert error < 0.03, (name, float(error))
        gram, gram_exact = gram_matrix(rounded[name]), gram_matrix(exact[name])
        assert gram.dtype == torch.float32
        assert (gram - gram_exact).norm() / gram_exact.norm() < 0.03


def test_bf16_gradient_points_the_same_way_as_float32(networks):
    grads = []
    target_image = image_to_tensor(picture(64, 64, 3))
    for model in networks:
        with torch.no_grad():
            target = {n: gram_matrix(f) for n, f in model(target_image, LAYERS).items()}
        x = image_to_tensor(picture(64, 64)).requires_grad_(True)
        feats = model(x, LAYERS)
        loss = sum(torch.nn.functional.mse_loss(gram_matrix(feats[n]), target[n]) for n in LAYERS if n != "relu4_2")
        content = feats["relu4_2"]
        loss = loss + torch.nn.functional.mse_loss(widen(content), widen(content.detach() * 0.5))
        assert loss.dtype == torch.float32
        loss.backward()
        assert x.grad.dtype == torch.float32
        grads.append(x.grad.flatten())
    assert torch.nn.functional.cosine_similarity(*grads, dim=0) > 0.99


def test_precision_choice():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    speedup = cpu_bf16_speedup()
    assert 0 < speedup < 100
    assert resolve_precision("auto", cpu) == ("bf16" if speedup >= 1.5 else "fp32")
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    with pytest.raises(InvalidParameter):
        resolve_precision("fp16", cpu)


def test_bf16_transfer_lowers_the_float32_objective_like_float32_does():
    """The same transfer in both precisions, each judged on the float32 network: bf16 gets as far."""
    content, style = picture(96, 96), picture(96, 96, 2)
    params = TransferParams(max_size=96, steps=30, scales=1, seed=0)
    judge = build_vgg19("caffe")
    with torch.no_grad():
        content_feats = judge(image_to_tensor(content), ["relu4_2"])["relu4_2"]
        style_grams = {n: gram_matrix(f) for n, f in judge(image_to_tensor(style), LAYERS[:4] + LAYERS[5:]).items()}

    @torch.no_grad()
    def objective(image) -> float:
        feats = judge(image_to_tensor(image), LAYERS)
        style_loss = sum(
            w * torch.mean((gram_matrix(feats[n]) - g) ** 2)
            for w, (n, g) in zip(params.style_layer_weights, style_grams.items())
        )
        return float(torch.mean((feats["relu4_2"] - content_feats) ** 2) + params.style_weight * style_loss)

    results = {p: StyleTransfer(device="cpu", precision=p).stylize(content, [style], params) for p in ("fp32", "bf16")}
    start = objective(content)
    reached = {p: objective(r.image) for p, r in results.items()}
    assert reached["fp32"] < 0.5 * start
    assert reached["bf16"] < 1.2 * reached["fp32"], (start, reached)


def test_bf16_is_decided_for_the_workers_own_gpu_not_the_current_one(monkeypatch):
    """A host of mixed cards: the current device (0) is a Turing without bf16, the worker's cuda:1 an Ampere."""
    from types import SimpleNamespace

    majors = {0: 7, 1: 8}
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda device: SimpleNamespace(major=majors[torch.device(device).index or 0]),
    )
    assert resolve_precision("auto", torch.device("cuda:1")) == "bf16"
    assert resolve_precision("bf16", torch.device("cuda:1")) == "bf16"
    assert resolve_precision("auto", torch.device("cuda:0")) == "fp32"
    with pytest.raises(InvalidParameter):
        resolve_precision("bf16", torch.device("cuda:0"))


@pytest.mark.parametrize(
    "requested, resolved, mode", [("fp32", "fp32", "ieee"), ("auto", "fp32", "tf32"), ("auto", "bf16", "ieee")]
)
def test_tf32_only_where_the_precision_was_left_to_the_engine(requested, resolved, mode):
    assert fp32_matmul_mode(requested, resolved) == mode
    saved = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    try:
        apply_fp32_matmul_mode(mode)
        assert torch.backends.cuda.matmul.fp32_precision == torch.backends.cudnn.conv.fp32_precision == mode
    finally:
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = saved
