"""How hard to pull towards the style: the weights name a balance between photo and style, and each run steers
its own style weight towards it (issue 33).

The same weight paints a high-contrast pattern far harder than a muted painting, even with each term in units of
the photo's own loss (objective.relative_to_photo): the stripes took the tiger three times further than The
Starry Night did. So the weights name a balance instead: the content ratio (the picture's content term over the
content term of the style stretched over the frame; 0 the photo, 1 the subject replaced) that the reference pair
(the tiger with The Starry Night) reaches with them. A run measures its own balance at the end of each scale but
the last and rescales the style weight for the next: the balance follows a new weight within a few steps of the
next scale (bench/README.md, `strength.py`).
"""

from __future__ import annotations

import math

from nst_shared.params import TransferParams

# The reference pair's balance at the default weights, and how it grows with the ratio of style to content weight.
REFERENCE_BALANCE = 0.262
REFERENCE_RATIO = (
    TransferParams.model_fields["style_weight"].default / TransferParams.model_fields["content_weight"].default
)
BALANCE_EXPONENT = 0.45
MAX_BALANCE = 0.9  # 1 is the subject replaced: no weight lands a pair there
# How a pair's balance answers its style weight (balance ~ weight^exponent): at least as steeply as the paintings
# do, since a scale that started from a far heavier weight has not settled when it is measured.
RESPONSE_EXPONENT = 0.45
RESPONSE_BOUNDS = (RESPONSE_EXPONENT, 1.0)
# The first scale's factor is low and a move up is small, since a pattern that has replaced the subject does not
# give it back when its weight falls (the stripes stay at 0.57 where a run from the photo lands at 0.23), while a
# weight raised later is followed: a move up at most MAX_RISE, a move down at most MAX_FALL.
INITIAL_FACTOR = 0.25
MAX_RISE, MAX_FALL = 3.0, 8.0
# What a run needs to be steered, else it keeps the factor 1: two measured scales (one move from the first scale's
# low factor can overshoot), a first scale of MIN_MEASURED_STEPS (its first steps overshoot towards the style
# before the content term holds them: The Starry Night 0.40 after 10 steps, 0.28 after 40) and MIN_MEASURED_PX
# (under it, conv4_2 has too few cells to measure: at 64 px the looks fell out of order).
MIN_MEASURED_SCALES, MIN_MEASURED_STEPS, MIN_MEASURED_PX = 2, 20, 128
FACTOR_BOUNDS = (1 / 50, 50.0)  # how much weaker or stronger than its weights say a pair may be painted


def target_balance(style_weight: float, content_weight: float) -> float:
    """The balance a style and a content weight name: the reference pair's with them."""
    ratio = style_weight / content_weight / REFERENCE_RATIO
    return float(min(REFERENCE_BALANCE * ratio**BALANCE_EXPONENT, MAX_BALANCE))


class Steering:
    """A run's style factor (what its style weight is multiplied by), moved after each measured balance so that
    the next scale lands at the target: by the pair's own response once two factors were measured."""

    def __init__(self, target: float) -> None:
        self.target = target
        self.factor = INITIAL_FACTOR
        self._measured: list[tuple[float, float]] = []  # (log factor, log balance)

    def measured(self, balance: float) -> float:
        """The factor for the next scale, given the balance the current factor reached."""
        point = (math.log(self.factor), math.log(max(balance, 1e-6)))
        response = RESPONSE_EXPONENT
        if self._measured and abs(point[0] - self._measured[-1][0]) > 0.05:
            (f0, b0), (f1, b1) = self._measured[-1], point
            response = min(max((b1 - b0) / (f1 - f0), RESPONSE_BOUNDS[0]), RESPONSE_BOUNDS[1])
        self._measured.append(point)
        low, high = FACTOR_BOUNDS
        move = min(max((math.log(self.target) - point[1]) / response, -math.log(MAX_FALL)), math.log(MAX_RISE))
        self.factor = min(max(math.exp(point[0] + move), low), high)
        return self.factor
