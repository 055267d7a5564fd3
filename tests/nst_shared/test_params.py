import argparse

import pytest
from pydantic import ValidationError

from nst_shared.errors import InvalidParameter
from nst_shared.params import DEFAULTS, LAYERS, TransferParams, api_fields, form_schema, param_fields


def test_params_round_trip_through_plain_data():
    params = TransferParams(style_blend=(0.7, 0.3), seed=3)
    assert TransferParams.from_dict(params.to_dict()) == params
    assert isinstance(params.to_dict()["style_layers"], list)


def test_old_record_params_load():
    old = {**DEFAULTS.to_dict(), "style_blend": [1, 1], "retired_field": 3}  # a field a later version dropped
    assert TransferParams.from_dict(old).style_blend == (1.0, 1.0)
    with pytest.raises(InvalidParameter) as refused:  # the worker fails such a job with this code
        TransferParams.from_dict({**old, "steps": 0})
    assert refused.value.field == "steps"


def test_every_field_documents_itself():
    for name, info in param_fields().items():
        assert info.description, name
    assert set(form_schema()) == set(api_fields()) and "style_layers" not in form_schema()
    assert DEFAULTS.content_layers == ("conv4_2",) and len(DEFAULTS.style_layers) == 5


def test_params_refuse_out_of_bounds_and_unknown_values():
    for bad in (
        {"steps": 0},
        {"steps": "1.5"},
        {"style_weight": float("inf")},
        {"init": "CONTENT"},
        {"style_blend": "0,0"},
        {"style_blend": "-1"},
        {"colour": "red"},
        {"style_layers": ["conv9_9"]},
        {"seed": -1},
    ):
        with pytest.raises(ValidationError):
            TransferParams.model_validate(bad)
    with pytest.raises(ValidationError, match="one weight per style layer"):
        DEFAULTS.replace(style_layers=("conv1_1",))
    assert DEFAULTS.replace(style_layers=("conv1_1",), style_layer_weights=None).layer_weights() == (1.0,)
    with pytest.raises(ValidationError, match="frozen"):
        DEFAULTS.steps = 3  # type: ignore[misc]


def test_form_text_parses_as_the_model_says():
    params = TransferParams.model_validate({"steps": "5", "style_blend": " 0.7, 0.3", "preserve_colors": "true"})
    assert params.steps == 5 and params.style_blend == (0.7, 0.3) and params.color_mode == "luminance"
    assert params.model_fields_set == {"steps", "style_blend", "preserve_colors", "color_mode"}


@pytest.mark.parametrize(
    "given, mode",
    [
        ({"preserve_colors": True}, "luminance"),
        ({"preserve_colors": False}, "style"),
        ({"preserve_colors": "true", "color_mode": "luminance"}, "luminance"),
        ({"preserve_colors": False, "color_mode": "match"}, "match"),
        ({"color_mode": "match"}, "match"),
        ({}, "style"),
    ],
)
def test_preserve_colors_is_an_alias_of_color_mode(given, mode):
    params = TransferParams.model_validate(given)
    assert params.color_mode == mode
    # Stored and copied as color_mode alone, so a copy may change the mode.
    assert "preserve_colors" not in params.to_dict() and TransferParams.from_dict(params.to_dict()) == params.replace()
    assert params.replace(color_mode="style").color_mode == "style"
    assert params.replace(preserve_colors=True).color_mode == "luminance"


@pytest.mark.parametrize(
    "given",
    [
        {"preserve_colors": True, "color_mode": "style"},
        {"preserve_colors": "true", "color_mode": "match"},
        {"preserve_colors": False, "color_mode": "luminance"},
    ],
)
def test_contradicting_colour_pair_refused(given):
    with pytest.raises(ValidationError, match="contradicts color_mode"):
        TransferParams.model_validate(given)


def test_style_weights_one_per_style():
    assert TransferParams(style_blend=(3, 1)).style_weights(2) == (0.75, 0.25)
    assert DEFAULTS.style_weights(4) == (0.25,) * 4
    with pytest.raises(InvalidParameter) as blend:
        TransferParams(style_blend=(0.5, 0.5)).style_weights(1)
    assert blend.value.field == "style_blend"
    with pytest.raises(InvalidParameter) as none:
        DEFAULTS.style_weights(0)
    assert none.value.field == "style"


def test_layer_names_are_the_engines():
    from nst_core.features import CONV_NAMES

    assert set(LAYERS) <= set(CONV_NAMES) and set(DEFAULTS.style_layers) <= set(LAYERS)


def test_device_defaults_replace_only_what_the_caller_left():
    from nst_shared.params import for_device

    params = TransferParams(steps=50)
    on_gpu = for_device(params, "cuda", explicit=params.model_fields_set)
    assert on_gpu.steps == 50 and on_gpu.max_size > DEFAULTS.max_size
    assert for_device(params, "cpu", explicit=set()) == params


def test_flags_given_are_the_explicit_ones():
    from nst_cli.options import add_param_arguments, params_from_args

    parser = argparse.ArgumentParser()
    add_param_arguments(parser)
    args = parser.parse_args(["--steps", "5", "--max_size=64", "--preserve-colors", "--style-blend", "1,2"])
    params = params_from_args(args)
    assert params.model_fields_set == {"steps", "max_size", "preserve_colors", "color_mode", "style_blend"}
    assert (params.steps, params.max_size, params.style_blend) == (5, 64, (1.0, 2.0))
    with pytest.raises(ValueError, match="--early-stop"):
        params_from_args(parser.parse_args(["--early-stop", "9"]))
