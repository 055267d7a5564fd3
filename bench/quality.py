"""How painted and how faithful a picture is, measured on the bundled Caffe VGG19 (see shared FACTS.md).

style ratio: mean over relu1_1..relu5_1 of Gram-MSE(output, style) / Gram-MSE(content, style), each layer
counting equally; content ratio: relu4_2 MSE(output, content) / MSE(style stretched over the frame, content).
Lower is more of each. Paintedness: how far the picture's fine features moved from the photo's; higher is more
painted.
"""

from __future__ import annotations

import functools

import torch
from PIL import Image

from nst_core.features import VGG19Features, build_vgg19
from nst_core.losses import gram_matrix
from nst_core.tensors import image_to_tensor
from nst_shared.images import fit_size, resize

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
PAINTED_LAYERS = ("relu1_1", "relu2_1", "relu3_1")


@functools.cache
def judge_model(device: str = "cpu") -> VGG19Features:
    """The float32 network that scores pictures, whatever precision the engine under test ran in."""
    return build_vgg19("caffe").to(device)


@torch.no_grad()
def quality_ratios(output: Image.Image, content: Image.Image, style: Image.Image) -> tuple[float, float]:
    """(style ratio, content ratio) of `output`, at the output's size."""
    model = judge_model()
    size = output.size
    layers = (*STYLE_LAYERS, CONTENT_LAYER)
    feats = {
        name: model(image_to_tensor(img), layers)
        for name, img in (
            ("out", output),
            ("content", resize(content, size)),
            ("style", resize(style, fit_size(*style.size, max(size)))),
            ("stretched", resize(style, size)),
        )
    }
    grams = {k: {n: gram_matrix(v[n]) for n in STYLE_LAYERS} for k, v in feats.items()}

    def mse(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.mean((a - b) ** 2))

    style_ratio = sum(
        mse(grams["out"][n], grams["style"][n]) / mse(grams["content"][n], grams["style"][n]) for n in STYLE_LAYERS
    ) / len(STYLE_LAYERS)
    content_ratio = mse(feats["out"][CONTENT_LAYER], feats["content"][CONTENT_LAYER]) / mse(
        feats["stretched"][CONTENT_LAYER], feats["content"][CONTENT_LAYER]
    )
    return style_ratio, content_ratio


@torch.no_grad()
def paintedness(output: Image.Image, content: Image.Image) -> float:
    """How painted `output` looks, 0 (the photo) .. 1: d / (1 + d), where d is the mean over relu1_1..relu3_1
    (colours, edges, strokes) of how far its features moved from the photo's, relative to the photo's own
    (MSE(output, photo) / mean square of the photo's). Unlike the content ratio, nothing in it depends on the
    style, so a muted style that leaves the photo alike scores low however close the picture came to that style
    (bench/README.md, "How painted a picture looks": it ranks a grid of pictures as the eye does)."""
    model = judge_model()
    photo = model(image_to_tensor(resize(content, output.size)), PAINTED_LAYERS)
    painted = model(image_to_tensor(output), PAINTED_LAYERS)
    moved = sum(
        float(torch.mean((painted[n] - photo[n]) ** 2) / torch.mean(photo[n] ** 2)) for n in PAINTED_LAYERS
    ) / len(PAINTED_LAYERS)
    return moved / (1 + moved)
