"""Losses of Gatys et al.: content MSE of features, style MSE of Gram matrices, optional total variation."""

from __future__ import annotations

from typing import Any

import torch


def widen(tensor: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision tensors (bf16 features); float32 and float64 stay as they are."""
    return tensor.float() if tensor.element_size() < 4 else tensor


class _Gram(torch.autograd.Function):
    """G = Rᵀ W R / norm for rows R (N, H*W, C) and cell weights W (None: all 1), with a backward of one matmul
    instead of autograd's two: dR = W R (dG + dGᵀ) / norm. Working on (H*W, C) rows keeps channels_last features
    a view, and the gradient comes back in the same layout as the convolution's, so adding the two needs no
    transpose.

    With bf16 features the products run in bf16 (accumulating in float32) and come out rounded to bf16; G is
    that, widened to float32, so the target and the loss are float32. A float32 Gram from widened features was
    25% slower per 512 px iteration and reached the same objective (tiger + The Starry Night, 200 steps: 2.90e5
    against 2.89e5).
    """

    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor, weights: torch.Tensor | None, norm: float | torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows, weights)
        ctx.norm = norm
        weighted = rows if weights is None else rows * weights.to(rows.dtype)
        return widen(torch.bmm(rows.transpose(1, 2), weighted)) / norm

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        rows, weights = ctx.saved_tensors
        weighted = rows if weights is None else rows * weights.to(rows.dtype)
        return torch.bmm(weighted, ((grad + grad.transpose(1, 2)) / ctx.norm).to(rows.dtype)), None, None


def gram_matrix(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Gram matrix (N, C, C) of (N, C, H, W) features, normalised by C*H*W so sizes and layers compare.

    With a mask (1, 1, H, W) of cell weights, the guided Gram matrix of Gatys et al. 2017 (§4): each cell's
    outer product weighted by the mask and normalised by C times the mask's area, so a style's statistics over
    its region alone compare with its image's, however small the region."""
    n, c, h, w = features.shape
    rows = features.permute(0, 2, 3, 1).reshape(n, h * w, c)
    if mask is None:
        gram: torch.Tensor = _Gram.apply(rows, None, float(c * h * w))
        return gram
    weights = mask.reshape(1, h * w, 1)
    gram = _Gram.apply(rows, weights, c * weights.sum())  # a tensor: no device sync
    return gram


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels, on the 0..255 scale the network sees."""
    x = image * 255.0
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()
