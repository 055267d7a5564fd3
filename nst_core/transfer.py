"""Neural style transfer after Gatys, Ecker and Bethge, "Image Style Transfer Using Convolutional Neural
Networks" (CVPR 2016): VGG19 features, content MSE at conv4_2, Gram-matrix style MSE at conv1_1..conv5_1,
the image optimised with L-BFGS starting from the content image.

Deviations from the paper, each for speed or looks: the image is optimised coarse to fine over several
scales (each scale starts from the previous result, so the fine scales only refine); the style image keeps
its aspect ratio and is sized relative to the output; colour preservation transfers on luminance only
(Gatys et al., "Preserving Color in Neural Artistic Style Transfer", 2016); where the device multiplies bf16
much faster (AMX CPUs, Ampere GPUs), the network runs in bf16 and everything else in float32 (precision.py).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from PIL import Image
from torch.nn import functional as F

from nst_core import colors
from nst_core.features import VGG19Features, WeightsName, build_vgg19
from nst_core.lbfgs import LBFGS
from nst_core.losses import ContentLoss, StyleLoss, gram_matrix, total_variation
from nst_core.precision import DTYPES, Precision, resolve_precision
from nst_core.progress import Progress, StopTransfer
from nst_core.tensors import image_to_tensor, tensor_to_image
from nst_shared.errors import DeviceOutOfMemory, Diverged, InvalidParameter
from nst_shared.images import MIN_SIDE_PX, check_min_side, fit_size, resize
from nst_shared.params import TransferParams

ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class TransferResult:
    """The picture and how the run ended."""

    image: Image.Image
    steps_done: int
    stopped: bool  # True when the callback raised StopTransfer
    elapsed_s: float
    total_loss: float


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then the CPU; an explicit device must exist here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InvalidParameter(f"unknown device {name!r}", field="device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameter("CUDA was asked for but no CUDA device is available", field="device")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidParameter("MPS was asked for but is not available", field="device")
    return device


def activation_name(layer: str) -> str:
    # Caffe's ReLUs run in place, so what the paper calls conv4_2 is the rectified activation: relu4_2.
    return "relu" + layer[4:] if layer.startswith("conv") else layer


# The L-BFGS history's share of a worker's memory, by the network's precision: bf16 activations take half the
# memory, and the history gets what that frees (a warm worker's 512 px peak: 1.42 GB in fp32 with 48 MB, 1.29 GB
# in bf16 with 96 MB).
HISTORY_BUDGET_BYTES = {"fp32": 48 * 2**20, "bf16": 96 * 2**20}


def history_size_for(pixels: int, budget_bytes: int) -> int:
    """L-BFGS history pairs by image size: each pair holds two RGB float32 images, and the history stays
    within the budget (100 pairs at 512 px would be 630 MB), with at least 8 pairs. At 512 px 16 pairs instead of
    8 reach the seed's objective in 9% fewer steps (bench/README.md); 100 instead of 16 buys ~1% more."""
    return max(8, min(100, budget_bytes // (2 * 3 * 4 * pixels)))


def scale_sizes(full: tuple[int, int], *, scales: int, min_size: int) -> list[tuple[int, int]]:
    """Sizes (width, height) from coarse to fine, geometric between `min_size` and the full size.

    Scales whose short side would fall under the network's minimum are left out.
    """
    longest = max(full)
    if scales <= 1 or longest <= min_size:
        return [full]
    ratio = (longest / min_size) ** (1 / (scales - 1))
    sizes = []
    for i in range(scales - 1):
        size = fit_size(full[0], full[1], round(min_size * ratio**i))
        if min(size) >= MIN_SIDE_PX and size not in sizes:
            sizes.append(size)
    return sizes + [full]


def split_steps(steps: int, n_scales: int) -> list[int]:
    """Iterations per scale: the same number at each scale, the remainder to the coarse (cheap) ones."""
    base, extra = divmod(steps, n_scales)
    return [base + (1 if i < extra else 0) for i in range(n_scales)]


class StyleTransfer:
    """A style-transfer engine: the network is built once, then `stylize` runs any number of transfers.

    Per-run state lives in locals, so one engine can serve jobs one after another for a process's life.
    Style Gram matrices are cached by image content, size and layers: a popular style is computed once.
    """

    def __init__(self, *, device: str = "auto", weights: WeightsName = "caffe", precision: Precision = "auto",
                 style_cache_size: int = 32) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        model = build_vgg19(weights, last_layer="relu5_1").set_compute_dtype(DTYPES[self.precision])
        self._channels_last = self.device.type in ("cpu", "cuda")
        if self._channels_last:
            # NHWC: oneDNN's convolutions run ~20% faster on this kind of CPU (FACTS.md), and cuDNN's
            # tensor-core (TF32) kernels take NHWC natively instead of transposing around every convolution.
            model = model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # one image size per scale: autotuning pays off
            # When the network runs in fp32 (asked for) on Ampere or later, tensor cores still take TF32 inputs.
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model: VGG19Features = model.to(self.device)
        self._style_cache: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
        self._style_cache_size = style_cache_size
        self._cache_lock = threading.Lock()

    @property
    def device_name(self) -> str:
        return str(self.device)

    def stylize(self, content: Image.Image, styles: Sequence[Image.Image], params: TransferParams, *,
                callback: ProgressCallback | None = None) -> TransferResult:
        """Paint `content` in the style of `styles` (RGB images); see `TransferParams` for the options (already
        validated by the model; the engine checks only what needs the images)."""
        started = time.perf_counter()
        blend = params.style_weights(len(styles))  # raises InvalidParameter unless one weight per style
        full_size = fit_size(*content.size, params.max_size)
        check_min_side(full_size, "content image")
        sizes = scale_sizes(full_size, scales=params.scales, min_size=params.min_scale_size)
        per_scale = split_steps(params.steps, len(sizes))
        generator = torch.Generator().manual_seed(params.seed if params.seed is not None
                                                  else torch.seed() % 2**63)

        content_work, styles_work = content, list(styles)
        if params.preserve_colors:
            content_work = colors.luminance_image(content)
            styles_work = [colors.match_luminance(colors.luminance_image(s), content_work) for s in styles]

        content_layers = [activation_name(n) for n in params.content_layers]
        style_layers = [activation_name(n) for n in params.style_layers]
        layer_weights = params.layer_weights()
        image: torch.Tensor | None = None
        step, stopped, total = 0, False, math.nan

        def finish(tensor: torch.Tensor) -> Image.Image:
            out = tensor_to_image(tensor)
            return colors.transfer_chroma(out, content) if params.preserve_colors else out

        try:
            for scale_index, (size, scale_steps) in enumerate(zip(sizes, per_scale), start=1):
                content_t = image_to_tensor(resize(content_work, size), self.device)
                with torch.no_grad():
                    content_feats = self.model(content_t, content_layers)
                content_losses = {n: ContentLoss(content_feats[n]) for n in content_layers}
                style_losses = {n: StyleLoss(g) for n, g in
                                self._style_grams(styles_work, blend, max(size) * params.style_scale,
                                                  style_layers).items()}
                image = self._initial_image(image, content_t, styles_work, size, params.init, generator)
                optimizer = LBFGS(image, history_size=history_size_for(size[0] * size[1],
                                                                        HISTORY_BUDGET_BYTES[self.precision]))
                losses: dict[str, float] = {}  # of the last evaluation
                accepted: dict[str, float] = {}  # of the image as it stands
                all_layers = sorted(set(content_layers) | set(style_layers))

                def closure() -> torch.Tensor:
                    x = image.contiguous(memory_format=torch.channels_last) if self._channels_last else image
                    feats = self.model(x, all_layers)
                    c_loss = params.content_weight * sum(l(feats[n]) for n, l in content_losses.items())
                    s_loss = params.style_weight * sum(layer_weights[i] * style_losses[n](feats[n])
                                                       for i, n in enumerate(style_layers))
                    tv = params.tv_weight * total_variation(image) if params.tv_weight else image.new_zeros(())
                    loss = c_loss + s_loss + tv
                    loss.backward()
                    # One device-to-host copy for all four numbers: one of a step's two syncs (L-BFGS makes the other).
                    values = torch.stack([c_loss.detach(), s_loss.detach(), tv.detach(), loss.detach()]).tolist()
                    losses.update(zip(("content", "style", "tv", "total"), values))
                    return loss

                history: list[float] = []
                for scale_step in range(1, scale_steps + 1):
                    if optimizer.step(closure):
                        accepted = dict(losses)
                    if not math.isfinite(accepted["total"]):  # absurd weights can overflow the loss
                        raise Diverged("the optimisation diverged; lower the style or content weight")
                    step += 1
                    total = accepted["total"]
                    history.append(total)
                    plateau = _plateaued(history, params.early_stop_tolerance)
                    last = step == params.steps or (plateau and scale_index == len(sizes))
                    if callback is not None:
                        wants_preview = params.preview_every > 0 and (step % params.preview_every == 0 or last)
                        progress = Progress(
                            step=step, steps=params.steps, scale=scale_index, scales=len(sizes),
                            width=size[0], height=size[1], content_loss=accepted["content"],
                            style_loss=accepted["style"], tv_loss=accepted["tv"], total_loss=total,
                            elapsed_s=time.perf_counter() - started,
                            preview=finish(image) if wants_preview else None)
                        try:
                            callback(progress)
                        except StopTransfer:
                            stopped = True
                            break
                    if plateau:
                        break
                if stopped:
                    break
            assert image is not None
            if image.shape[-2:] != (full_size[1], full_size[0]):  # stopped before the last scale
                image = _upsample(image, full_size)
            result = finish(image)
        except torch.OutOfMemoryError as exc:
            raise DeviceOutOfMemory(f"{self.device} ran out of memory at {params.max_size} px: {exc}") from None
        except RuntimeError as exc:  # the CPU allocator reports a refused allocation as a plain RuntimeError
            if "can't allocate memory" not in str(exc):
                raise
            raise DeviceOutOfMemory(f"{self.device} ran out of memory at {params.max_size} px") from None
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()  # give the memory back between jobs
        return TransferResult(image=result, steps_done=step, stopped=stopped,
                              elapsed_s=time.perf_counter() - started, total_loss=total)

    def _style_grams(self, styles: Sequence[Image.Image], blend: Sequence[float], longest_px: float,
                     layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """The blend of the styles' Gram matrices at each layer, each style at `longest_px` on its long side."""
        grams: dict[str, torch.Tensor] = {}
        for style, weight in zip(styles, blend):
            if weight == 0:
                continue
            size = fit_size(*style.size, max(1, round(longest_px)))
            check_min_side(size, "style image (at this style_scale)")
            for name, gram in self._style_gram(style, size, layers).items():
                grams[name] = grams[name] + weight * gram if name in grams else weight * gram
        return grams

    def _style_gram(self, style: Image.Image, size: tuple[int, int],
                    layers: Sequence[str]) -> dict[str, torch.Tensor]:
        key = (hashlib.sha1(style.tobytes()).hexdigest(), style.size, size, tuple(layers))
        with self._cache_lock:
            if key in self._style_cache:
                self._style_cache.move_to_end(key)
                return self._style_cache[key]
        with torch.no_grad():
            feats = self.model(image_to_tensor(resize(style, size), self.device), layers)
            grams = {name: gram_matrix(feats[name]) for name in layers}
        with self._cache_lock:
            self._style_cache[key] = grams
            while len(self._style_cache) > self._style_cache_size:
                self._style_cache.popitem(last=False)
        return grams

    def _initial_image(self, previous: torch.Tensor | None, content_t: torch.Tensor,
                       styles: Sequence[Image.Image], size: tuple[int, int], init: str,
                       generator: torch.Generator) -> torch.Tensor:
        if previous is not None:
            start = _upsample(previous.detach(), size)
        elif init == "content":
            start = content_t.clone()
        elif init == "noise":
            noise = torch.rand(content_t.shape, generator=generator)
            start = noise.to(self.device)
        elif init == "style":
            start = image_to_tensor(resize(styles[0], size), self.device)
        else:
            raise InvalidParameter(f"unknown init {init!r}: use content, noise or style", field="init")
        # L-BFGS flattens the gradient with .view(-1), so the optimised tensor itself stays contiguous.
        return start.contiguous().requires_grad_(True)


def _upsample(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    with torch.no_grad():
        out = F.interpolate(image.detach(), size=(size[1], size[0]), mode="bicubic", align_corners=False)
        return out.clamp_(0.0, 1.0)


def _plateaued(history: Sequence[float], tolerance: float, window: int = 10) -> bool:
    """True when the loss fell by less than `tolerance` (a fraction) over the last `window` steps."""
    if tolerance <= 0 or len(history) <= window:
        return False
    before = history[-window - 1]
    return before > 0 and (before - history[-1]) / before < tolerance
