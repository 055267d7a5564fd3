"""Losses of Gatys et al.: content MSE of features, style MSE of Gram matrices, optional total variation."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of (N, C, H, W) features, normalised by C*H*W so sizes and layers compare."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


class ContentLoss(nn.Module):
    """MSE between features and the content image's features at the same layer."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target.detach())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(features, self.target)


class StyleLoss(nn.Module):
    """MSE between the Gram matrix of features and a target Gram (one style's, or a blend of several)."""

    def __init__(self, target_gram: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target_gram.detach())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(gram_matrix(features), self.target)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels, on the 0..255 scale the network sees."""
    x = image * 255.0
    return ((x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean())
