"""How hard to pull towards the style on this pair, found per job by a short probe (issue 33).

The same relative style weight paints a high-contrast pattern far harder than a muted painting: with the photo's
own losses as units (objective.relative_to_photo) the stripes still took the tiger 3x further towards them than
The Starry Night did (bench/README.md, `strength.py`). How far a pair goes is visible early: a probe of a few
steps from the photo at a small size moves the subject about as far, relative to the other pairs, as the whole
run will. So a run first paints such a probe, measures how far the subject went (`content_share`), and divides the style
weight by the pair's strength relative to the reference pair (the tiger with The Starry Night): a style weight
then lands every pair where it lands the reference, and the looks' weights name the same balance on every pair.
"""

from __future__ import annotations

import torch

PROBE_PX = 128
PROBE_STEPS = 10
# What a probe takes at the model's defaults: a look or a caller's weights change the picture, not the pair's strength.
STRENGTH_FIELDS = (
    "look",
    "content_weight",
    "style_weight",
    "tv_weight",
    "content_layers",
    "style_layers",
    "style_layer_weights",
)
# The reference pair's probe share at the default weight, and how a pair's finished content ratio follows its
# probe's: factor = (REFERENCE_SHARE / share)^(1 / RESPONSE_EXPONENT). 0.45 from the tiger at 256 px: 0.3 took the
# stripes (probe share 1.9x the reference's) from a content ratio of 0.778 to 0.160 against 0.263 for The Starry
# Night, a response of weight^0.73 there (bench/README.md, `strength.py`).
REFERENCE_SHARE = 0.416
RESPONSE_EXPONENT = 0.45
FACTOR_BOUNDS = (1 / 50, 50.0)  # how much weaker or stronger than the reference a pair may be taken to be


def content_share(picture: torch.Tensor, photo: torch.Tensor, styles: torch.Tensor) -> float:
    """How far the picture's content features went from the photo's, as a share of the way to the style's own
    (the style stretched over the frame): 0 for the photo, about 1 where the subject is replaced."""
    moved = torch.mean((picture.float() - photo.float()) ** 2)
    return float(moved / torch.mean((styles.float() - photo.float()) ** 2).clamp_min(1e-12))


def style_factor(probe_share: float) -> float:
    """What to multiply the style weight by so that this pair lands where the reference pair does."""
    low, high = FACTOR_BOUNDS
    factor = (REFERENCE_SHARE / max(probe_share, 1e-9)) ** (1 / RESPONSE_EXPONENT)
    return float(min(max(factor, low), high))
