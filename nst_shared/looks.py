"""Looks: named presets of the engine's knobs, so a person can pick how painted a picture is by name.

A look is the parameters it changes from the model's defaults (`balanced` changes none: it is the defaults).
A parameter given explicitly wins over its look's value. Size and time (max_size, steps) are never part of a
look: they stay the caller's and the device's (params.DEVICE_DEFAULTS), so every look costs the same time.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

Look = Literal["subtle", "balanced", "painterly", "texture"]
LOOK_NAMES: tuple[str, ...] = get_args(Look)
DEFAULT_LOOK: Look = "balanced"

# Layer weights that let the middle layers (conv2_1..conv4_1, the brush strokes) count more than the default's
# and conv5_1 (the painting's large shapes) less: strokes over the subject too, without stamping shapes on it.
# Painterly's are halfway there, so thin subjects (towers under a busy style) keep their outlines.
_PAINTERLY_LAYER_WEIGHTS = (0.15, 0.4, 0.36, 0.48, 0.08)
_STROKE_LAYER_WEIGHTS = (0.15, 0.67, 0.6, 0.8, 0.053)

LOOKS: dict[str, dict[str, Any]] = {
    # The photo with the painting's colours and a light texture.
    "subtle": {"style_weight": 5.0},
    # The defaults: the style's swirls and palette around a crisp subject.
    "balanced": {},
    # Strokes over the whole picture, the subject still readable.
    "painterly": {"style_weight": 25.0, "style_layer_weights": _PAINTERLY_LAYER_WEIGHTS},
    # The style's texture everywhere; the subject only as shapes under it.
    "texture": {"style_weight": 60.0, "style_layer_weights": _STROKE_LAYER_WEIGHTS},
}

LOOK_DESCRIPTIONS: dict[str, str] = {
    "subtle": "the photo with the painting's colours and a light texture",
    "balanced": "the style's swirls and palette around a crisp subject (the defaults)",
    "painterly": "brush strokes over the whole picture, the subject still readable",
    "texture": "the style's texture everywhere, the subject only as shapes under it",
}


def look_values(name: str) -> dict[str, Any]:
    """The parameters look `name` sets (empty for an unknown name: the model's validation refuses it)."""
    return dict(LOOKS.get(name, {}))
