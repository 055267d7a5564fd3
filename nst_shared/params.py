"""The one model of the style-transfer parameters: every default, bound, choice and cross-field rule is here.

The engine, the worker, the API form (and its OpenAPI schema), the CLI flags, the web page and the docs all
read `TransferParams`; the deployment's own caps (NST_MAX_SIZE_PX, ...) are applied on top by the service.
"""

from __future__ import annotations

import functools
import secrets
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from nst_shared.errors import InvalidParameter
from nst_shared.looks import DEFAULT_LOOK, LOOK_DESCRIPTIONS, Look, look_values

Init = Literal["content", "noise", "style"]
INITS: tuple[str, ...] = get_args(Init)
# style: the painting's colours; luminance: the photo's colours, painted on luminance only; match: the style
# image recoloured to the photo's colour statistics before the run (nst_core/colors.py).
ColorMode = Literal["style", "luminance", "match"]
COLOR_MODES: tuple[str, ...] = get_args(ColorMode)
# The number format of the network (nst_core/precision.py): an engine setting, like the device, not a job's.
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
# VGG19's convolutions down to conv5_1, where the engine cuts its network (as the paper names them; the engine
# reads the rectified activation of each).
Layer = Literal[
    "conv1_1",
    "conv1_2",
    "conv2_1",
    "conv2_2",
    "conv3_1",
    "conv3_2",
    "conv3_3",
    "conv3_4",
    "conv4_1",
    "conv4_2",
    "conv4_3",
    "conv4_4",
    "conv5_1",
]
LAYERS: tuple[str, ...] = get_args(Layer)

CONTENT_LAYERS: tuple[Layer, ...] = ("conv4_2",)
STYLE_LAYERS: tuple[Layer, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
# Each layer's share of the style term, whose layers are each relative to the photo's own distance from the style
# (nst_core/objective.py, relative_to_photo): about equal, as in Gatys et al., the values that paint the tiger with
# The Starry Night as the raw weights before did. docs/parameters.md, "What strength means".
STYLE_LAYER_WEIGHTS: tuple[float, ...] = (0.15, 0.22, 0.2, 0.16, 0.16)

SEED_MAX = 2**31 - 1  # a seed fits a signed 32-bit integer: every client language and JSON reader keeps it exact

# Parameters of the engine alone: not form fields of the API, nor CLI flags.
ENGINE_ONLY: frozenset[str] = frozenset({"content_layers", "style_layers", "style_layer_weights"})


def _comma_separated(value: Any) -> Any:
    """'0.7,0.3' (a form field, a CLI flag) as a list of numbers; anything else as it came."""
    return [part.strip() for part in value.split(",")] if isinstance(value, str) else value


Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]
# On the wire (a form field) the blend is one comma-separated string.
StyleBlend = Annotated[
    Annotated[tuple[Weight, ...], Field(min_length=1, max_length=64)] | None,
    BeforeValidator(_comma_separated),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\s*[0-9.eE+-]+(\s*,\s*[0-9.eE+-]+)*\s*$",
            "maxLength": 200,
            "examples": ["0.7,0.3"],
        },
        mode="validation",
    ),
]


class TransferParams(BaseModel):
    """Everything that decides what picture a transfer makes (not where it runs)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    look: Annotated[
        Look,
        Field(
            description="A named preset of the knobs below (a knob given explicitly wins): "
            + "; ".join(f"{k}: {v}" for k, v in LOOK_DESCRIPTIONS.items())
            + "."
        ),
    ] = DEFAULT_LOOK
    max_size: Annotated[
        int,
        Field(
            ge=64,
            le=8192,
            description="Longest side of the output in pixels (above 1024: a print, painted coarse to fine up to it).",
        ),
    ] = 384
    steps: Annotated[
        int,
        Field(ge=1, le=2000, description="L-BFGS iterations in all, over every scale (each one is a progress step)."),
    ] = 120
    content_weight: Annotated[
        float,
        Field(
            ge=0,
            le=1e9,
            description="Weight of the content loss (MSE of conv4_2 features, relative to the photo's own features).",
        ),
    ] = 1.0
    style_weight: Annotated[
        float,
        Field(
            ge=0,
            le=1e12,
            description="Strength of the style: the weight of the style loss (MSE of Gram matrices, each layer "
            "relative to the photo's own distance from the style), steered during the run so that a weight gives "
            "every style the balance it gives The Starry Night on the tiger. 5 subtle .. 15 the default .. "
            "60 texture.",
        ),
    ] = 15.0
    tv_weight: Annotated[
        float, Field(ge=0, le=1e6, description="Weight of the total-variation loss, which smooths the image.")
    ] = 0.0
    style_scale: Annotated[
        float,
        Field(
            ge=0.1,
            le=4.0,
            description="Size of the style image relative to the "
            "output size, never past the style's own resolution (times "
            "style_scale when over 1).",
        ),
    ] = 1.0
    style_blend: Annotated[
        StyleBlend,
        Field(description="Weights of the style images, one per style (normalised to sum 1); equal when unset."),
    ] = None
    color_mode: Annotated[
        ColorMode,
        Field(
            description="Colours of the picture: style (the painting's), "
            "luminance (the photo's, transfer on luminance only) or match (the "
            "style image recoloured to the photo's colours first)."
        ),
    ] = "style"
    # Left out of dumps: color_mode carries its meaning, so a stored or copied model never holds both.
    preserve_colors: Annotated[
        bool | None,
        Field(exclude=True, description="Older name of color_mode=luminance: true means it, false rules it out."),
    ] = None
    init: Annotated[Init, Field(description="Starting image: content, noise or style.")] = "content"
    seed: Annotated[
        Annotated[int, Field(ge=0, le=SEED_MAX)] | None,
        Field(description="Random seed; runs with the same seed are reproducible on the CPU."),
    ] = None
    scales: Annotated[
        int, Field(ge=1, le=6, description="Number of scales, coarse to fine (1 = single scale, as in Gatys et al.).")
    ] = 3
    min_scale_size: Annotated[
        int, Field(ge=64, le=2048, description="Longest side of the coarsest scale in pixels.")
    ] = 192
    early_stop_tolerance: Annotated[
        float,
        Field(
            ge=0,
            le=0.5,
            description="Stop a scale early when the loss improves by less than this fraction over 10 steps (0 = off).",
        ),
    ] = 0.0
    preview_every: Annotated[
        int, Field(ge=0, le=2000, description="Send a preview image every N steps (0 = none).")
    ] = 0
    temporal_weight: Annotated[
        float,
        Field(
            ge=0,
            le=1e6,
            description="Clips only: weight of the temporal loss, the mean squared difference (pixels in 0..1) to "
            "the previous painted frame warped by the optical flow, where the flow is trusted (Ruder et al. 2016); "
            "0 paints each frame on its own.",
        ),
    ] = 200.0
    frame_steps: Annotated[
        int,
        Field(
            ge=1,
            le=2000,
            description="Clips only: L-BFGS iterations of each frame after the first, which starts from the previous "
            "painted frame warped to it (the first frame takes `steps`).",
        ),
    ] = 30
    content_layers: Annotated[tuple[Layer, ...], Field(min_length=1, description="Layers of the content loss.")] = (
        CONTENT_LAYERS
    )
    style_layers: Annotated[tuple[Layer, ...], Field(min_length=1, description="Layers of the style loss.")] = (
        STYLE_LAYERS
    )
    style_layer_weights: Annotated[
        tuple[Weight, ...] | None,
        Field(
            description="Weight per style layer, one per style layer (None: equal, as in Gatys et al.); the default "
            "balances the five default layers."
        ),
    ] = STYLE_LAYER_WEIGHTS

    @model_validator(mode="wrap")
    @classmethod
    def _fill_from_look(cls, data: Any, handler: ModelWrapValidatorHandler[TransferParams]) -> TransferParams:
        """The look's values for the fields not given, validated like given ones; `model_fields_set` stays the
        fields the caller gave (and what an alias among them set), so the explicit ones can be told from the
        look's."""
        if not isinstance(data, dict):
            return handler(data)
        given = set(data) & set(cls.model_fields)
        look = look_values(str(data.get("look", DEFAULT_LOOK)))
        params = handler({**look, **data})
        # What validation set from the given fields (color_mode from preserve_colors) counts as given too.
        object.__setattr__(params, "__pydantic_fields_set__", given | (params.model_fields_set - set(look)))
        return params

    @field_validator("style_blend")
    @classmethod
    def _blend_not_all_zero(cls, blend: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if blend is not None and sum(blend) <= 0:
            raise ValueError("the weights must not all be 0")
        return blend

    @model_validator(mode="after")
    def _one_weight_per_style_layer(self) -> TransferParams:
        weights = self.style_layer_weights
        if weights is not None and len(weights) != len(self.style_layers):
            raise ValueError(
                f"style_layer_weights has {len(weights)} values for {len(self.style_layers)} style "
                "layers; give one weight per style layer"
            )
        return self

    @model_validator(mode="after")
    def _preserve_colors_is_an_alias(self) -> TransferParams:
        """preserve_colors=true is color_mode=luminance; false rules luminance out; with color_mode, they agree."""
        if self.preserve_colors is None:
            return self
        if "color_mode" in self.model_fields_set:
            if self.preserve_colors != (self.color_mode == "luminance"):
                raise ValueError(
                    f"preserve_colors={str(self.preserve_colors).lower()} contradicts "
                    f"color_mode={self.color_mode}; give color_mode alone"
                )
        elif self.preserve_colors:
            object.__setattr__(self, "color_mode", "luminance")  # a frozen model: set once, while validating
            self.model_fields_set.add("color_mode")  # an explicit choice: clients send it, workers keep it
        return self

    def replace(self, **changes: Any) -> TransferParams:
        """A copy with `changes`, validated like any other (preserve_colors, changed alone, sets color_mode)."""
        base = self.model_dump()
        if "preserve_colors" in changes and "color_mode" not in changes:
            del base["color_mode"]
        return type(self).model_validate({**base, **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (tuples become lists), for job records and the queue."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransferParams:
        """Parameters from a job record (fields this version no longer has are left out); InvalidParameter
        for a record this version refuses, so its job fails with that code."""
        try:
            return cls.model_validate({k: v for k, v in data.items() if k in cls.model_fields})
        except ValidationError as exc:
            field, message = first_error(exc)
            raise InvalidParameter(f"{field}: {message}" if field else message, field=field) from None

    def style_weights(self, styles: int) -> tuple[float, ...]:
        """The weight of each of `styles` style images, summing to 1 (raises InvalidParameter when the blend
        does not give one per style)."""
        if styles < 1:
            raise InvalidParameter("at least one style image is needed", field="style")
        blend = self.style_blend if self.style_blend is not None else (1.0,) * styles
        if len(blend) != styles:
            raise InvalidParameter(f"style_blend: {len(blend)} weights for {styles} style images", field="style_blend")
        return tuple(w / sum(blend) for w in blend)

    def layer_weights(self) -> tuple[float, ...]:
        """The weight of each style layer (equal when unset, as in Gatys et al.)."""
        n = len(self.style_layers)
        return self.style_layer_weights if self.style_layer_weights is not None else (1.0 / n,) * n


def param_fields() -> dict[str, FieldInfo]:
    """Every parameter's field (annotation, default, bounds, description), in the model's order."""
    return dict(TransferParams.model_fields)


def api_fields() -> dict[str, FieldInfo]:
    """The parameters a job submission may set: form fields of the API, flags of the CLI."""
    return {name: info for name, info in TransferParams.model_fields.items() if name not in ENGINE_ONLY}


@functools.cache
def form_schema() -> dict[str, dict[str, Any]]:
    """Each API parameter's JSON schema as a form field (or flag) carries it. The OpenAPI form, the CLI's
    help, the web page and docs/parameters.md read it; shared, so copy before changing."""
    return {k: v for k, v in form_properties(TransferParams).items() if k in api_fields()}


def form_properties(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """The JSON schema of each field of `model` as a form field: a value, or left out for the default (so a
    field that may be None is not nullable on the form)."""
    fields: dict[str, dict[str, Any]] = {}
    for name, schema in model.model_json_schema()["properties"].items():
        schema = dict(schema)
        variants = [v for v in schema.pop("anyOf", []) if v.get("type") != "null"]
        if variants:
            [value] = variants
            schema = {**value, **schema}
        if schema.get("default", ...) is None:
            del schema["default"]
        schema.pop("title", None)
        fields[name] = schema
    return fields


def first_error(exc: ValidationError) -> tuple[str | None, str]:
    """(the field, what is wrong with it) of the first problem a validation found."""
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else None
    if error["type"] == "extra_forbidden":
        return field, "unknown parameter"
    return field, error["msg"].removeprefix("Value error, ")


# The defaults above are for a CPU (a 384 px picture in about a minute on two cores). A GPU paints a bigger
# picture with more steps in a fraction of that: these replace the defaults a caller did not set.
DEVICE_DEFAULTS: dict[str, dict[str, Any]] = {"cuda": {"max_size": 512, "steps": 300}}


def for_device(params: TransferParams, device_type: str, *, explicit: set[str] | frozenset[str]) -> TransferParams:
    """`params` with `device_type`'s defaults for every field not in `explicit` (the ones the caller set)."""
    changes = {k: v for k, v in DEVICE_DEFAULTS.get(device_type, {}).items() if k not in explicit}
    return params.replace(**changes) if changes else params


def with_seed(params: TransferParams) -> TransferParams:
    """`params` with a seed drawn within the seed's bounds when none is set, so the run can be recorded and
    repeated."""
    return params if params.seed is not None else params.replace(seed=secrets.randbelow(SEED_MAX + 1))


DEFAULTS = TransferParams()
