"""How painted and how faithful a picture is: the style ratio, the content ratio and paintedness (bench/README.md,
strength.py's section, defines them)."""

from __future__ import annotations

import functools
import statistics

import torch
from PIL import Image

from nst_core.features import VGG19Features, build_vgg19
from nst_core.losses import gram_matrix
from nst_core.tensors import image_to_tensor
from nst_shared.images import fit_size, resize

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
PAINTED_LAYERS = ("relu1_1", "relu2_1", "relu3_1")


def mse(a: torch.Tensor, b: torch.Tensor | float) -> float:
    return float(torch.mean((a - b) ** 2))


@functools.cache
def judge_model(device: str = "cpu") -> VGG19Features:
    """The float32 network that scores pictures, whatever precision the engine under test ran in."""
    return build_vgg19("caffe").to(device)


@torch.no_grad()
def quality_ratios(output: Image.Image, content: Image.Image, style: Image.Image) -> tuple[float, float]:
    """(style ratio, content ratio) of `output`, at the output's size."""
    model, size, layers = judge_model(), output.size, (*STYLE_LAYERS, CONTENT_LAYER)
    pictures = {"out": output, "content": resize(content, size), "stretched": resize(style, size)}
    pictures["style"] = resize(style, fit_size(*style.size, max(size)))
    feats = {name: model(image_to_tensor(picture), layers) for name, picture in pictures.items()}
    grams = {k: {n: gram_matrix(v[n]) for n in STYLE_LAYERS} for k, v in feats.items()}

    out, photo, style_grams, c = grams["out"], grams["content"], grams["style"], CONTENT_LAYER
    style_ratio = statistics.fmean(mse(out[n], style_grams[n]) / mse(photo[n], style_grams[n]) for n in STYLE_LAYERS)
    content_ratio = mse(feats["out"][c], feats["content"][c]) / mse(feats["stretched"][c], feats["content"][c])
    return style_ratio, content_ratio


@torch.no_grad()
def paintedness(output: Image.Image, content: Image.Image) -> float:
    """0 (the photo) .. 1: d / (1 + d), d the mean over relu1_1..relu3_1 of MSE(output, photo) / the photo's mean
    square; nothing in it depends on the style (bench/README.md, "How painted a picture looks")."""
    model = judge_model()
    photo = model(image_to_tensor(resize(content, output.size)), PAINTED_LAYERS)
    painted = model(image_to_tensor(output), PAINTED_LAYERS)
    moved = statistics.fmean(mse(painted[n], photo[n]) / mse(photo[n], 0) for n in PAINTED_LAYERS)
    return moved / (1 + moved)
