"""Colour control (Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer", 2017, §5): transfer
on luminance only with the content's own colours put back, or the style image recoloured to the content's colour
statistics before the run."""

from __future__ import annotations

import numpy as np
from PIL import Image


def luminance_image(image: Image.Image) -> Image.Image:
    """The image's luminance (ITU-R 601 Y) as a grey RGB image."""
    return image.convert("L").convert("RGB")


def match_luminance(style: Image.Image, content: Image.Image) -> Image.Image:
    """Shift and scale the style's luminance to the content's mean and spread, so tones match."""
    s = np.asarray(style.convert("L"), dtype=np.float64)
    c = np.asarray(content.convert("L"), dtype=np.float64)
    matched = (s - s.mean()) * (c.std() / max(s.std(), 1e-6)) + c.mean()
    return Image.fromarray(np.clip(matched + 0.5, 0, 255).astype(np.uint8), mode="L").convert("RGB")


def transfer_chroma(output: Image.Image, content: Image.Image) -> Image.Image:
    """The output's luminance with the content's chroma (YCbCr), at the output's size."""
    y, _, _ = output.convert("YCbCr").split()
    _, cb, cr = content.resize(output.size, Image.Resampling.BICUBIC).convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")


# Eigenvalues of a colour covariance (RGB in 0..1) are held at least this (a standard deviation of 2.5 of 255
# levels), so a nearly grey style image's chroma noise is not blown up by the inverse square root.
_MIN_VARIANCE = 1e-4


def match_colors(style: Image.Image, content: Image.Image) -> Image.Image:
    """The style image with the content's mean and covariance of RGB: x' = A (x - mu_s) + mu_c with
    A = Sigma_c^(1/2) Sigma_s^(-1/2), the symmetric matrix square roots (the "Image Analogies" variant of Gatys et
    al. 2017, §5.2, which keeps the axes of both distributions rather than Cholesky's triangular factor)."""
    s = np.asarray(style.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255.0
    c = np.asarray(content.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255.0
    mean_s, mean_c = s.mean(axis=0), c.mean(axis=0)
    transform = _sqrtm(np.cov(c, rowvar=False)) @ _sqrtm(np.cov(s, rowvar=False), inverse=True)
    matched = (s - mean_s) @ transform.T + mean_c
    pixels = np.clip(matched * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(style.height, style.width, 3)
    return Image.fromarray(pixels, mode="RGB")


def _sqrtm(covariance: np.ndarray, *, inverse: bool = False) -> np.ndarray:
    """The symmetric square root (or its inverse) of a covariance matrix."""
    values, vectors = np.linalg.eigh(covariance)
    values = np.maximum(values, _MIN_VARIANCE)
    root: np.ndarray = (vectors * (values ** (-0.5 if inverse else 0.5))) @ vectors.T
    return root


def color_stats(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """The mean and covariance of an image's RGB in 0..1."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255.0
    return pixels.mean(axis=0), np.cov(pixels, rowvar=False)
