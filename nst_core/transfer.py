"""Neural style transfer after Gatys, Ecker and Bethge, "Image Style Transfer Using Convolutional Neural
Networks" (CVPR 2016): VGG19 features, content MSE at conv4_2, Gram-matrix style MSE at conv1_1..conv5_1,
the image optimised with L-BFGS starting from the content image.

Deviations from the paper, each for speed or looks: the image is optimised coarse to fine over several
scales (each scale starts from the previous result, so the fine scales only refine: nst_shared/schedule.py);
each term's weight is relative to the photo's own loss (objective.relative_to_photo), and each run steers its style
weight at the end of each scale towards the balance its weights name (calibration.py), so a weight paints every
style about as strongly;
a picture too large for the memory budget is evaluated block by block with the exact global loss (objective.py);
the style image keeps its aspect ratio and is sized relative to the output, never past its own resolution; colour
control and masks follow Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer" (2017): colours.py,
masks.py (where no mask reaches, the content is put back across a feathered edge); where the device multiplies bf16
much faster (AMX CPUs, Ampere GPUs), the network runs in bf16 and everything else in float32 (precision.py).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch
from PIL import Image
from torch.nn import functional as F

from nst_core import colors, masks
from nst_core.blocks import Block, block_grid, grid_of
from nst_core.calibration import MIN_MEASURED_PX, MIN_MEASURED_SCALES, MIN_MEASURED_STEPS, Steering, target_balance
from nst_core.features import VGG19Features, WeightsName, build_vgg19
from nst_core.lbfgs import LBFGS
from nst_core.losses import gram_matrix, widen
from nst_core.objective import (
    LossTerms,
    Network,
    StyleTarget,
    TemporalTerm,
    content_term,
    evaluate_blocks,
    evaluate_whole,
    features_by_blocks,
    gram_matrices_by_blocks,
    relative_to_photo,
)
from nst_core.precision import DTYPES, apply_fp32_matmul_mode, fp32_matmul_mode, resolve_precision
from nst_core.progress import Progress, StopTransfer
from nst_core.tensors import image_to_tensor, tensor_to_image
from nst_shared.device_budget import DeviceMemory
from nst_shared.errors import DeviceOutOfMemory, Diverged, InvalidParameter
from nst_shared.images import check_min_side, fit_size, resize
from nst_shared.masks import check_mask_count, check_mask_covers
from nst_shared.memory import MemoryPlan, default_budget_bytes, format_bytes, plan_memory
from nst_shared.params import Precision, TransferParams
from nst_shared.schedule import Scale, plan_scales, step_cost, style_longest_px

if TYPE_CHECKING:
    from nst_core.flow import TemporalTarget  # OpenCV loads only when a clip is painted

ProgressCallback = Callable[[Progress], None]
# Where cuDNN times its algorithms at each new shape (a slow first step, faster steps after): every shape, whole
# images only (a scale's one shape; blocks come in several), or nowhere. bench/gpu_check.py measures which pays.
CudnnBenchmark = Literal["all", "whole", "off"]
CUDNN_BENCHMARK: tuple[str, ...] = get_args(CudnnBenchmark)
PREVIEW_MAX_PX = 1024  # previews of a print travel to a browser: a screenful is enough


@dataclass(frozen=True)
class TransferResult:
    """The picture and how the run ended."""

    image: Image.Image
    steps_done: int
    stopped: bool  # True when the callback raised StopTransfer
    elapsed_s: float
    total_loss: float
    style_factor: float = 1.0  # what the calibration multiplied the style weight by (calibration.py)


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


class StyleTransfer:
    """A style-transfer engine: the network is built once, then `stylize` runs any number of transfers.

    Per-run state lives in locals, so one engine can serve jobs one after another for a process's life.
    Style Gram matrices are cached by image content, size and layers: a popular style is computed once.
    """

    def __init__(
        self,
        *,
        device: str = "auto",
        weights: WeightsName = "caffe",
        precision: Precision = "auto",
        memory_budget_bytes: int | None = None,
        block_px: int | None = None,
        style_cache_size: int = 32,
        cudnn_benchmark: CudnnBenchmark = "all",
    ) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        model = build_vgg19(weights, last_layer="relu5_1").set_compute_dtype(DTYPES[self.precision])
        self._channels_last = self.device.type in ("cpu", "cuda")
        if self._channels_last:
            # NHWC: oneDNN's convolutions run faster on x86 CPUs (bench/README.md), and cuDNN's
            # tensor-core (TF32) kernels take NHWC natively instead of transposing around every convolution.
            model = model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            apply_fp32_matmul_mode(fp32_matmul_mode(precision, self.precision))
        self.model: VGG19Features = model.to(self.device)
        self.net = Network(self.model, channels_last=self._channels_last)
        total = torch.cuda.get_device_properties(self.device).total_memory if self.device.type == "cuda" else None
        # What a run may use at its peak: decides between the whole image and blocks, and the L-BFGS history.
        self.memory_budget_bytes = memory_budget_bytes or default_budget_bytes(self.device.type, total)
        if cudnn_benchmark not in CUDNN_BENCHMARK:
            choices = ", ".join(CUDNN_BENCHMARK)
            raise InvalidParameter(f"cudnn_benchmark must be one of {choices}", field="cudnn_benchmark")
        self.cudnn_benchmark = cudnn_benchmark
        self.block_px = block_px  # set: blocks of this side wherever the picture is larger (tests, benchmarks)
        self._style_cache: OrderedDict[tuple[object, ...], dict[str, torch.Tensor]] = OrderedDict()
        self._style_cache_size = style_cache_size
        self._cache_lock = threading.Lock()

    @staticmethod
    def device_memory(device: str = "auto") -> DeviceMemory | None:
        """The GPU `device` names and the memory free on it now, which the workers sharing it split before
        building their engines (worker/gpu_share.py); None on a CPU or MPS."""
        resolved = resolve_device(device)
        if resolved.type != "cuda":
            return None
        free, total = torch.cuda.mem_get_info(resolved)
        return DeviceMemory(str(torch.cuda.get_device_properties(resolved).uuid), free, total)

    @property
    def device_name(self) -> str:
        return str(self.device)

    def stylize(
        self,
        content: Image.Image,
        styles: Sequence[Image.Image],
        params: TransferParams,
        *,
        style_masks: Sequence[Image.Image] | None = None,
        callback: ProgressCallback | None = None,
        init_image: Image.Image | None = None,
        temporal: TemporalTarget | None = None,
        style_factor: float | None = None,
    ) -> TransferResult:
        """Paint `content` in the style of `styles` (RGB images), each style only where its mask in `style_masks`
        is white, when given (masks.py); see `TransferParams` for the options (already validated by the model;
        the engine checks only what needs the images). A clip's frame (nst_core/video.py) starts from
        `init_image` instead of `params.init` and is held near `temporal`'s target (both at the output's size).
        `style_factor`, when given, is the calibration to use (a clip's later frames reuse the first one's)."""
        run = self._start(content, styles, style_masks or [], params, callback, init_image, temporal)
        steering = _steering(params, run.plan) if style_factor is None else None
        if style_factor is None:
            style_factor = steering.factor if steering is not None else 1.0
        run = replace(run, style_weight=params.style_weight * style_factor)
        image: torch.Tensor | None = None
        outcome = _ScaleOutcome(image=None, step=0, total_loss=math.nan, stopped=False)
        try:
            for index, scale in enumerate(run.plan, start=1):
                measure = steering is not None and index < len(run.plan)
                outcome = self._optimise_scale(run, index, scale, image, outcome.step, measure_balance=measure)
                image = outcome.image
                if outcome.stopped:
                    break
                if steering is not None and outcome.balance is not None:
                    run = replace(run, style_weight=params.style_weight * steering.measured(outcome.balance))
            assert image is not None
            width, height = fit_size(*content.size, params.max_size)
            if image.shape[-2:] != (height, width):  # stopped before the last scale, or it had no steps
                image = _upsample(image, (width, height))
            result = run.picture(image)
        except torch.OutOfMemoryError as exc:
            raise DeviceOutOfMemory(f"{self.device} ran out of memory at {params.max_size} px: {exc}") from None
        except RuntimeError as exc:  # a refused allocation reported as a plain RuntimeError
            if not any(sign in str(exc) for sign in ALLOCATION_FAILURES):
                raise
            raise DeviceOutOfMemory(f"{self.device} ran out of memory at {params.max_size} px") from None
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()  # give the memory back between jobs
        return TransferResult(
            image=result,
            steps_done=outcome.step,
            stopped=outcome.stopped,
            elapsed_s=run.elapsed_s(),
            total_loss=outcome.total_loss,
            style_factor=run.style_factor(),
        )

    def _start(
        self,
        content: Image.Image,
        styles: Sequence[Image.Image],
        style_masks: Sequence[Image.Image],
        params: TransferParams,
        callback: ProgressCallback | None,
        init_image: Image.Image | None = None,
        temporal: TemporalTarget | None = None,
    ) -> _Run:
        """Everything a run's scales share, checked before any work."""
        started = time.perf_counter()
        blend = params.style_weights(len(styles))  # raises InvalidParameter unless one weight per style
        check_min_side(fit_size(*content.size, params.max_size), "content image")
        check_mask_count(len(style_masks), len(styles))
        for index, mask in enumerate(style_masks):
            check_mask_covers(mask, index)
        content_work, styles_work = content, list(styles)
        if params.color_mode == "luminance":
            content_work = colors.luminance_image(content)
            styles_work = [colors.match_luminance(colors.luminance_image(s), content_work) for s in styles]
        elif params.color_mode == "match":
            styles_work = [colors.match_colors(s, content) for s in styles]
        seed = params.seed if params.seed is not None else torch.seed() % 2**63
        plan = plan_scales(content.size, params)
        if temporal is not None and self._plan_memory(plan[-1])[1] is not None:
            raise InvalidParameter(
                f"a clip's frames must fit this engine's memory whole: {params.max_size} px is too large",
                field="max_size",
            )
        return _Run(
            params=params,
            plan=plan,
            content=content,
            step_costs=[step_cost(s, precision=self.precision, budget_bytes=self.memory_budget_bytes) for s in plan],
            content_work=content_work,
            styles_work=styles_work,
            blend=blend,
            masks=[masks.mask_tensor(m) for m in style_masks],
            uncovered=list(style_masks) if style_masks and not masks.covers_everywhere(style_masks) else [],
            content_layers=[activation_name(n) for n in params.content_layers],
            style_layers=[activation_name(n) for n in params.style_layers],
            layer_weights=params.layer_weights(),
            style_weight=params.style_weight,
            generator=torch.Generator().manual_seed(seed),
            callback=callback,
            started=started,
            init_image=init_image,
            temporal=temporal,
        )

    def _optimise_scale(
        self,
        run: _Run,
        index: int,
        scale: Scale,
        previous: torch.Tensor | None,
        step: int,
        *,
        measure_balance: bool = False,
    ) -> _ScaleOutcome:
        """One scale's L-BFGS iterations, from the previous scale's picture (or the run's initial image); with
        `measure_balance`, the outcome says where the finished scale landed between photo and style."""
        params, step_before = run.params, step
        memory, grid = self._plan_memory(scale)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.cudnn_benchmark == "all" or (
                self.cudnn_benchmark == "whole" and grid is None
            )
        content_t = image_to_tensor(resize(run.content_work, scale.size), self.device)
        terms = self._loss_terms(run, content_t, scale, grid)
        image = self._initial_image(previous, content_t, run, scale.size)
        del content_t
        optimizer = LBFGS(image, history_size=memory.history_pairs)
        accepted: dict[str, float] = {}  # losses of the image as it stands
        blocks = len(grid) if grid else 0

        def report(**fields: Any) -> None:
            if run.callback is not None:
                run.callback(
                    Progress(
                        steps=params.steps,
                        scale=index,
                        scales=len(run.plan),
                        width=scale.width,
                        height=scale.height,
                        blocks=blocks,
                        elapsed_s=run.elapsed_s(),
                        **fields,
                    )
                )

        def on_block(done: int, total: int) -> None:
            # The scale's first evaluation has no losses of its own yet: it shows the latest picture's, so that
            # a callback can stop the run between blocks (a print-size evaluation takes minutes).
            shown = accepted or run.latest_losses
            if shown:
                report(
                    step=step,
                    block=done,
                    content_loss=shown["content"],
                    style_loss=shown["style"],
                    tv_loss=shown["tv"],
                    total_loss=shown["total"],
                    work_fraction=run.work_fraction(index, step - step_before + done / total),
                )

        def closure() -> torch.Tensor:
            if grid is None:
                return evaluate_whole(self.net, image, terms)
            return evaluate_blocks(self.net, image, terms, grid, on_block=on_block)

        history: list[float] = []
        for _ in range(scale.steps):
            try:
                optimizer.step(closure)
            except StopTransfer:  # raised by a block's report: the image goes back to the accepted point
                optimizer.restore()
                return _ScaleOutcome(image, step, accepted.get("total", math.nan), stopped=True)
            # The step's one read from the device: the accepted point's losses, for the report and the checks.
            accepted = dict(zip(("content", "style", "tv", "total"), optimizer.values.tolist()))
            run.latest_losses.update(accepted)
            if not math.isfinite(accepted["total"]):  # absurd weights can overflow the loss
                raise Diverged("the optimisation diverged; lower the style or content weight")
            step += 1
            history.append(accepted["total"])
            plateau = _plateaued(history, params.early_stop_tolerance)
            last = step == params.steps or (plateau and index == len(run.plan))
            wants_preview = params.preview_every > 0 and (step % params.preview_every == 0 or last)
            try:
                report(
                    step=step,
                    content_loss=accepted["content"],
                    style_loss=accepted["style"],
                    tv_loss=accepted["tv"],
                    total_loss=accepted["total"],
                    work_fraction=run.work_fraction(index, step - step_before),
                    preview=run.picture(image, preview=True) if wants_preview and run.callback else None,
                )
            except StopTransfer:
                return _ScaleOutcome(image, step, accepted["total"], stopped=True)
            if plateau:
                break
        balance = self._balance(run, scale, terms, grid, accepted["content"]) if measure_balance and accepted else None
        return _ScaleOutcome(image, step, accepted.get("total", math.nan), stopped=False, balance=balance)

    def _balance(
        self, run: _Run, scale: Scale, terms: LossTerms, grid: list[Block] | None, content_loss: float
    ) -> float:
        """The picture's content term over the styles' own, each style stretched over the frame: 0 the photo, 1
        the subject replaced (calibration.py)."""
        stretched = sum(
            share * content_term(self.net, image_to_tensor(resize(style, scale.size), self.device), terms, grid)
            for style, share in zip(run.styles_work, run.blend)
        )
        return content_loss / max(stretched, 1e-12)

    def _plan_memory(self, scale: Scale) -> tuple[MemoryPlan, list[Block] | None]:
        """How this engine's budget fits the scale: the L-BFGS history, and the blocks (None: the whole image)."""
        memory = plan_memory(scale.width, scale.height, precision=self.precision, budget_bytes=self.memory_budget_bytes)
        if not memory.fits:
            raise DeviceOutOfMemory(
                f"a {scale.width}x{scale.height} picture needs about "
                f"{format_bytes(memory.peak_bytes)}, over this engine's memory budget of "
                f"{format_bytes(self.memory_budget_bytes)}"
            )
        layout = memory.grid
        if self.block_px and max(scale.size) > self.block_px:
            layout = grid_of(scale.width, scale.height, self.block_px)
        return memory, block_grid(scale.width, scale.height, layout) if layout else None

    def _loss_terms(self, run: _Run, content_t: torch.Tensor, scale: Scale, grid: list[Block] | None) -> LossTerms:
        """The scale's targets: the content image's features and the styles' Gram matrices, with their weights."""
        params = run.params
        with torch.no_grad():
            if grid is None:
                content_feats = {n: widen(f) for n, f in self.net(content_t, run.content_layers).items()}
            else:
                content_feats = features_by_blocks(self.net, content_t, run.content_layers, grid)
        layers = list(zip(run.style_layers, run.layer_weights))
        if run.masks:
            style = self._guided_targets(run, scale)
        else:
            grams = self._style_grams(run.styles_work, run.blend, max(scale.size), params.style_scale, run.style_layers)
            style = {n: [StyleTarget(run.style_weight * w, grams[n])] for n, w in layers}
        terms = LossTerms(
            content={n: (params.content_weight, content_feats[n]) for n in run.content_layers},
            style=style,
            tv_weight=params.tv_weight,
            temporal=_temporal_term(run.temporal, scale.size, self.device) if run.temporal else None,
        )
        return relative_to_photo(self.net, content_t, terms, grid)

    def _guided_targets(self, run: _Run, scale: Scale) -> dict[str, list[StyleTarget]]:
        """Each style's own Gram matrices, each matched over its mask (at each layer's resolution).

        A style's weight is its share of the blend times the number of styles (1 with equal weights), times its
        mask's mean at the layer: with the Gram normalised by the mask's area, each pixel under a mask is pulled
        as hard as under an unmasked single style, whatever the mask's size."""
        params = run.params
        targets: dict[str, list[StyleTarget]] = {n: [] for n in run.style_layers}
        for style, share, mask in zip(run.styles_work, run.blend, run.masks):
            if share == 0:
                continue
            grams = self._style_gram(
                style, self._style_size(style, max(scale.size), params.style_scale), run.style_layers
            )
            mask_here = masks.at_size(mask, scale.size, self.device)
            for name, layer_weight in zip(run.style_layers, run.layer_weights):
                layer_mask = masks.at_layer(mask_here, name)
                weight = run.style_weight * layer_weight * share * len(run.styles_work) * layer_mask.mean().item()
                targets[name].append(StyleTarget(weight, grams[name], layer_mask))
        return targets

    def _style_size(self, style: Image.Image, output_longest: int, style_scale: float) -> tuple[int, int]:
        size = fit_size(*style.size, style_longest_px(style.size, output_longest, style_scale))
        check_min_side(size, "style image (at this style_scale)")
        return size

    def _style_grams(
        self,
        styles: Sequence[Image.Image],
        blend: Sequence[float],
        output_longest: int,
        style_scale: float,
        layers: Sequence[str],
    ) -> dict[str, torch.Tensor]:
        """The blend of the styles' Gram matrices at each layer, each style sized for an output whose long side
        is `output_longest` (nst_shared.schedule.style_longest_px)."""
        grams: dict[str, torch.Tensor] = {}
        for style, weight in zip(styles, blend):
            if weight == 0:
                continue
            size = self._style_size(style, output_longest, style_scale)
            for name, gram in self._style_gram(style, size, layers).items():
                grams[name] = grams[name] + weight * gram if name in grams else weight * gram
        return grams

    def _style_gram(self, style: Image.Image, size: tuple[int, int], layers: Sequence[str]) -> dict[str, torch.Tensor]:
        key = (hashlib.sha1(style.tobytes()).hexdigest(), style.size, size, tuple(layers))
        with self._cache_lock:
            if key in self._style_cache:
                self._style_cache.move_to_end(key)
                return self._style_cache[key]
        image = image_to_tensor(resize(style, size), self.device)
        memory = plan_memory(*size, precision=self.precision, budget_bytes=self.memory_budget_bytes)
        if memory.grid is None:
            with torch.no_grad():
                feats = self.net(image, layers)
                grams = {name: gram_matrix(feats[name]) for name in layers}
        else:
            grams = gram_matrices_by_blocks(self.net, image, layers, block_grid(*size, memory.grid))
        with self._cache_lock:
            self._style_cache[key] = grams
            while len(self._style_cache) > self._style_cache_size:
                self._style_cache.popitem(last=False)
        return grams

    def _initial_image(
        self, previous: torch.Tensor | None, content_t: torch.Tensor, run: _Run, size: tuple[int, int]
    ) -> torch.Tensor:
        init, styles, generator = run.params.init, run.styles_work, run.generator
        if previous is not None:
            start = _upsample(previous.detach(), size)
        elif run.init_image is not None:
            start = image_to_tensor(resize(run.init_image, size), self.device)
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


# Refused allocations that arrive as plain RuntimeErrors, not torch.OutOfMemoryError: the CPU allocator's, and
# cuDNN's and cuBLAS's workspaces on a full card.
ALLOCATION_FAILURES = ("can't allocate memory", "CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED")


@dataclass(frozen=True)
class _Run:
    """What every scale of one run shares."""

    params: TransferParams
    plan: list[Scale]
    step_costs: list[float]  # of one iteration at each scale (nst_shared.schedule.step_cost)
    content: Image.Image
    content_work: Image.Image  # as the network sees it: its luminance when the colours are preserved
    styles_work: list[Image.Image]
    blend: Sequence[float]
    masks: list[torch.Tensor]  # one per style at its own size (masks.mask_tensor), or none
    uncovered: list[Image.Image]  # the masks, when some of the picture is left out of all: composited back
    content_layers: list[str]
    style_layers: list[str]
    layer_weights: Sequence[float]
    style_weight: float  # the caller's, times the calibration's factor
    generator: torch.Generator
    callback: ProgressCallback | None
    started: float
    latest_losses: dict[str, float] = field(default_factory=dict)  # of the latest accepted picture, any scale
    init_image: Image.Image | None = None  # a clip's frame: the previous painted frame warped to it
    temporal: TemporalTarget | None = None

    def style_factor(self) -> float:
        """What the calibration multiplied the caller's style weight by."""
        return self.style_weight / self.params.style_weight if self.params.style_weight else 1.0

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def work_fraction(self, index: int, steps: float) -> float:
        """The share of the run's work done after `steps` iterations of scale `index` (1-based)."""
        done = sum(s.steps * c for s, c in zip(self.plan[: index - 1], self.step_costs))
        total = sum(s.steps * c for s, c in zip(self.plan, self.step_costs))
        return min(1.0, (done + steps * self.step_costs[index - 1]) / total)

    def picture(self, image: torch.Tensor, *, preview: bool = False) -> Image.Image:
        """The picture of `image`, with the content's colours put back when asked; a preview at most
        `PREVIEW_MAX_PX` on its long side."""
        if preview and max(image.shape[-2:]) > PREVIEW_MAX_PX:
            height, width = image.shape[-2:]
            image = _resample(image, fit_size(width, height, PREVIEW_MAX_PX), mode="area")
        out = tensor_to_image(image)
        if self.params.color_mode == "luminance":
            out = colors.transfer_chroma(out, self.content)
        return masks.composite(out, self.content, self.uncovered) if self.uncovered else out


@dataclass(frozen=True)
class _ScaleOutcome:
    image: torch.Tensor | None  # None before the first scale has run
    step: int  # steps done over the whole run
    total_loss: float
    stopped: bool
    balance: float | None = None  # measured when the run steers its style weight (calibration.py)


def _steering(params: TransferParams, plan: Sequence[Scale]) -> Steering | None:
    """How this run's style weight is steered; None when it starts elsewhere than the photo or a term is off (the
    balance is measured from the photo), or when its scales are too few, short or small to measure."""
    if params.init != "content" or not params.style_weight or not params.content_weight:
        return None
    if len(plan) - 1 < MIN_MEASURED_SCALES or plan[0].steps < MIN_MEASURED_STEPS or max(plan[0].size) < MIN_MEASURED_PX:
        return None
    return Steering(target_balance(params.style_weight, params.content_weight))


def _temporal_term(target: TemporalTarget, size: tuple[int, int], device: torch.device) -> TemporalTerm:
    """`target` at a scale's `size` (width, height): its certainty averaged over the pixels each cell covers."""
    certainty = torch.from_numpy(target.certainty)[None, None]
    if certainty.shape[-2:] != (size[1], size[0]):
        certainty = F.interpolate(certainty, size=(size[1], size[0]), mode="area")
    image = image_to_tensor(resize(target.image, size), device)
    return TemporalTerm(target.weight, image, certainty.to(device))


def _upsample(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return _resample(image, size, mode="bicubic")


def _resample(image: torch.Tensor, size: tuple[int, int], *, mode: str) -> torch.Tensor:
    with torch.no_grad():
        corners = False if mode == "bicubic" else None
        out = F.interpolate(image.detach(), size=(size[1], size[0]), mode=mode, align_corners=corners)
        return out.clamp_(0.0, 1.0)


def _plateaued(history: Sequence[float], tolerance: float, window: int = 10) -> bool:
    """True when the loss fell by less than `tolerance` (a fraction) over the last `window` steps."""
    if tolerance <= 0 or len(history) <= window:
        return False
    before = history[-window - 1]
    return before > 0 and (before - history[-1]) / before < tolerance
