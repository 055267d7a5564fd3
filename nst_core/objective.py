"""The loss of one scale and its gradient: evaluated on the whole image, or block by block at print size.

Both give the same numbers (a test holds them to 1e-3 in float32). Block by block follows Galerne et al.,
"Scaling Painting Style Transfer" (2022): a first pass without gradients sums every block's Gram matrices into
the exact global ones; then, since the gradient of the Gram loss with respect to a layer's features is linear
in them given the global Gram (dL/dF = c (G - T) F), a second pass backpropagates it block by block, together
with the content and total-variation terms, which are local anyway. A style mask is sliced like the image: each
block's cores weigh their cells by the mask's cells there, and the guided Gram matrices are summed as plain ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch.nn import functional as F

from nst_core.blocks import Block, Span
from nst_core.features import VGG19Features, layer_stride
from nst_core.losses import gram_matrix, total_variation, widen

BlockCallback = Callable[[int, int], None]  # (blocks done, blocks) within one evaluation


@dataclass(frozen=True)
class StyleTarget:
    """A Gram matrix the picture's should match at one layer, with its weight (the layer weight folded in)."""

    weight: float
    gram: torch.Tensor  # one style's, or a blend of several
    mask: torch.Tensor | None = None  # (1, 1, h, w) cell weights at the layer where it paints; None: everywhere


@dataclass(frozen=True)
class TemporalTerm:
    """A clip's frame held near the previous painted frame warped to it, where the flow is trusted (Ruder et al.
    2016): weight x mean(certainty x (x - target)^2), pixels in 0..1."""

    weight: float
    target: torch.Tensor  # (1, 3, h, w) at the scale's size
    certainty: torch.Tensor  # (1, 1, h, w), 0..1

    def loss(self, image: torch.Tensor) -> torch.Tensor:
        return self.weight * (self.certainty * (image - self.target).pow(2)).mean()


@dataclass(frozen=True)
class LossTerms:
    """What one scale's loss compares, each target with its weight (the layer weights folded in)."""

    content: dict[str, tuple[float, torch.Tensor]]  # layer: (weight, the content image's features)
    style: dict[str, list[StyleTarget]]  # layer: its targets (one per masked style; else one blend)
    tv_weight: float
    temporal: TemporalTerm | None = None  # a clip's frame after the first; whole-image evaluation only

    @property
    def layers(self) -> list[str]:
        return sorted(set(self.content) | set(self.style))


class Network:
    """The frozen extractor with the engine's memory layout: what both ways of evaluating run images through."""

    def __init__(self, model: VGG19Features, *, channels_last: bool) -> None:
        self.model = model
        self.channels_last = channels_last

    def __call__(self, image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        # L-BFGS flattens the image with .view(-1), so the image itself stays contiguous; the copy is the network's.
        if not layers:
            return {}
        x = image.contiguous(memory_format=torch.channels_last) if self.channels_last else image
        features: dict[str, torch.Tensor] = self.model(x, layers)
        return features


def relative_to_photo(net: Network, photo: torch.Tensor, terms: LossTerms, grid: Sequence[Block] | None) -> LossTerms:
    """`terms` with each weight divided by what its loss is for the photo itself: a content layer's by the photo's
    mean squared features there, a style target's by the photo's own Gram distance to it (under its mask). Both
    terms then measure the share of the way from the photo to the style, so a weight means the same on every
    pair: a style far from the photo (a saturated pattern) is pulled no harder than a muted one."""
    content = {name: (w / _floored(target.pow(2).mean()), target) for name, (w, target) in terms.content.items()}
    masks = {name: [t.mask for t in targets] for name, targets in terms.style.items()}
    if grid is None:
        with torch.no_grad():
            feats = net(photo, list(masks))
        grams = {name: [gram_matrix(feats[name], mask) for mask in found] for name, found in masks.items()}
    else:
        grams = guided_gram_matrices_by_blocks(net, photo, masks, grid)
    style = {
        # The floor keeps a photo that already matches a style (its distance near 0) from scaling the weight up
        # without bound.
        name: [
            replace(t, weight=t.weight / _floored(F.mse_loss(gram, t.gram), floor=1e-3 * t.gram.pow(2).mean()))
            for t, gram in zip(targets, grams[name])
        ]
        for name, targets in terms.style.items()
    }
    return replace(terms, content=content, style=style)


def _floored(value: torch.Tensor, *, floor: torch.Tensor | None = None) -> float:
    return max(float(value), float(floor) if floor is not None else 0.0, 1e-12)


def evaluate_whole(net: Network, image: torch.Tensor, terms: LossTerms) -> torch.Tensor:
    """Loss parts (content, style, tv, total) as one tensor; the gradient is left in `image.grad`."""
    feats = net(image, terms.layers)
    zero = image.new_zeros(())
    content = sum((w * F.mse_loss(widen(feats[n]), t) for n, (w, t) in terms.content.items()), zero)
    style = sum(
        (
            t.weight * F.mse_loss(gram_matrix(feats[n], t.mask), t.gram)
            for n, targets in terms.style.items()
            for t in targets
        ),
        zero,
    )
    tv = terms.tv_weight * total_variation(image) if terms.tv_weight else zero
    total = content + style + tv
    if terms.temporal is not None:
        total = total + terms.temporal.loss(image)
    total.backward()  # type: ignore[no-untyped-call]
    return torch.stack([content.detach(), style.detach(), tv.detach(), total.detach()])


def content_term(net: Network, image: torch.Tensor, terms: LossTerms, grid: Sequence[Block] | None) -> float:
    """The content term `evaluate_whole` would give `image`, without gradients."""
    layers = list(terms.content)
    with torch.no_grad():
        feats = net(image, layers) if grid is None else features_by_blocks(net, image, layers, grid)
        return float(sum(w * F.mse_loss(widen(feats[n]), t) for n, (w, t) in terms.content.items()))


def evaluate_blocks(
    net: Network, image: torch.Tensor, terms: LossTerms, grid: Sequence[Block], *, on_block: BlockCallback | None = None
) -> torch.Tensor:
    """As `evaluate_whole`, with the network's memory bounded by the largest block of `grid`."""
    height, width = image.shape[-2:]
    masks = {name: [t.mask for t in targets] for name, targets in terms.style.items()}
    grams = guided_gram_matrices_by_blocks(net, image.detach(), masks, grid)
    style = image.new_zeros(())
    style_grads: dict[str, list[tuple[torch.Tensor, torch.Tensor | None]]] = {}
    for name, targets in terms.style.items():
        style_grads[name] = []
        for target, gram in zip(targets, grams[name]):
            diff = gram - target.gram
            style = style + target.weight * diff.pow(2).mean()
            c = diff.shape[-1]
            area = _area(target.mask, name, height, width)
            # d(w mean((G - T)^2))/dF for G = F^T M F / (c area), G - T symmetric: M F (4 w (G - T) / (c^3 area)).
            style_grads[name].append((diff[0] * (4 * target.weight / (c**3 * area)), target.mask))

    grad = torch.zeros_like(image)
    content = image.new_zeros(())
    tv = image.new_zeros(())
    for done, block in enumerate(grid, start=1):
        x = image.detach()[..., block.rows.outer, block.cols.outer].requires_grad_(True)
        feats = net(x, terms.layers)
        grad_outputs = {name: torch.zeros_like(f) for name, f in feats.items()}
        for name, parts in style_grads.items():
            core = _core(feats[name], block, name)
            for matrix, mask in parts:
                part = core.permute(0, 2, 3, 1) @ matrix.to(core.dtype)
                if mask is not None:
                    part = part * _block_mask(mask, block, name).permute(0, 2, 3, 1).to(part.dtype)
                _core(grad_outputs[name], block, name).add_(part.permute(0, 3, 1, 2))
        for name, (weight, content_target) in terms.content.items():
            stride = layer_stride(name)
            diff = widen(_core(feats[name], block, name)) - _core(
                content_target[..., block.rows.global_cells(stride), block.cols.global_cells(stride)], block, name
            )
            content = content + weight * diff.pow(2).sum().detach() / content_target.numel()
            _core(grad_outputs[name], block, name).add_(
                (2 * weight / content_target.numel() * diff).to(feats[name].dtype)
            )
        outputs, grads = [feats[n] for n in grad_outputs], list(grad_outputs.values())
        if terms.tv_weight:
            tv_part = terms.tv_weight * _total_variation_of_core(x, block, height, width)
            tv = tv + tv_part.detach()
            outputs.append(tv_part)
            grads.append(torch.ones_like(tv_part))
        if outputs:
            torch.autograd.backward(outputs, grads)
            assert x.grad is not None
            grad[..., block.rows.outer, block.cols.outer] += x.grad
        del feats, grad_outputs, outputs, grads, x
        if on_block is not None:
            on_block(done, len(grid))
    image.grad = grad
    total = content + style + tv
    return torch.stack([content, style.detach(), tv, total.detach()])


def gram_matrices_by_blocks(
    net: Network, image: torch.Tensor, layers: Sequence[str], grid: Sequence[Block]
) -> dict[str, torch.Tensor]:
    """The whole image's Gram matrices (as `gram_matrix`), summed over the blocks' cores without gradients."""
    grams = guided_gram_matrices_by_blocks(net, image, {name: [None] for name in layers}, grid)
    return {name: found[0] for name, found in grams.items()}


def guided_gram_matrices_by_blocks(
    net: Network, image: torch.Tensor, masks: dict[str, list[torch.Tensor | None]], grid: Sequence[Block]
) -> dict[str, list[torch.Tensor]]:
    """For each layer, the whole image's Gram matrix under each of its masks (as `gram_matrix(features, mask)`;
    None: unmasked), summed over the blocks' cores without gradients."""
    height, width = image.shape[-2:]
    sums: dict[str, list[torch.Tensor]] = {}
    if not masks:
        return sums
    with torch.no_grad():
        for block in grid:
            feats = net(image[..., block.rows.outer, block.cols.outer], list(masks))
            for name, layer_masks in masks.items():
                core = _core(feats[name], block, name)
                rows = core.permute(0, 2, 3, 1).reshape(core.shape[0], -1, core.shape[1])
                parts = []
                for mask in layer_masks:
                    weighted = (
                        rows if mask is None else rows * _block_mask(mask, block, name).reshape(1, -1, 1).to(rows.dtype)
                    )
                    parts.append(widen(torch.bmm(rows.transpose(1, 2), weighted)))
                sums[name] = [a + b for a, b in zip(sums[name], parts)] if name in sums else parts
            del feats
    return {
        name: [total / (total.shape[-1] * _area(mask, name, height, width)) for total, mask in zip(totals, masks[name])]
        for name, totals in sums.items()
    }


def _area(mask: torch.Tensor | None, layer: str, height: int, width: int) -> float | torch.Tensor:
    """The cells a Gram matrix at `layer` averages over: all of them, or the mask's weight."""
    stride = layer_stride(layer)
    return (height // stride) * (width // stride) if mask is None else mask.sum()


def _block_mask(mask: torch.Tensor, block: Block, layer: str) -> torch.Tensor:
    """The block's core cells of a whole-image mask at `layer`."""
    stride = layer_stride(layer)
    return _core(mask[..., block.rows.global_cells(stride), block.cols.global_cells(stride)], block, layer)


def features_by_blocks(
    net: Network, image: torch.Tensor, layers: Sequence[str], grid: Sequence[Block]
) -> dict[str, torch.Tensor]:
    """The whole image's features at `layers` in float32, assembled from the blocks' cores without gradients."""
    height, width = image.shape[-2:]
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for block in grid:
            feats = net(image[..., block.rows.outer, block.cols.outer], layers)
            for name in layers:
                stride = layer_stride(name)
                f = feats[name]
                if name not in out:
                    out[name] = f.new_empty(
                        (f.shape[0], f.shape[1], height // stride, width // stride),
                        dtype=torch.float32 if f.element_size() < 4 else f.dtype,
                    )
                target = out[name][..., block.rows.global_cells(stride), block.cols.global_cells(stride)]
                _core(target, block, name).copy_(_core(f, block, name))
            del feats
    return out


def _core(tensor: torch.Tensor, block: Block, layer: str) -> torch.Tensor:
    stride = layer_stride(layer)
    return tensor[..., block.rows.cells(stride), block.cols.cells(stride)]


def _total_variation_of_core(x: torch.Tensor, block: Block, height: int, width: int) -> torch.Tensor:
    """The block's share of `total_variation` of the whole image: the differences that start in its core."""
    rows, cols = _local(block.rows), _local(block.cols)
    x = x * 255.0
    down = x[..., rows.start : min(rows.stop, x.shape[-2] - 1), cols]
    below = x[..., rows.start + 1 : min(rows.stop, x.shape[-2] - 1) + 1, cols]
    right = x[..., rows, cols.start : min(cols.stop, x.shape[-1] - 1)]
    beside = x[..., rows, cols.start + 1 : min(cols.stop, x.shape[-1] - 1) + 1]
    channels = x.shape[-3]
    return (below - down).pow(2).sum() / (channels * (height - 1) * width) + (beside - right).pow(2).sum() / (
        channels * height * (width - 1)
    )


def _local(span: Span) -> slice:
    return slice(span.start - span.outer_start, span.stop - span.outer_start)
