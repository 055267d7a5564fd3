import argparse

import pytest
from pydantic import ValidationError

from nst_shared.looks import LOOK_NAMES, LOOKS
from nst_shared.params import DEFAULTS, DEVICE_DEFAULTS, TransferParams, api_fields, for_device, form_schema


def test_every_look_is_a_valid_set_of_parameters():
    assert set(LOOKS) == set(LOOK_NAMES) == set(form_schema()["look"]["enum"])
    for name, values in LOOKS.items():
        params = TransferParams(look=name)
        assert params.model_dump(include=set(values)) == TransferParams(**values).model_dump(include=set(values))
        assert params.model_fields_set == {"look"}


def test_balanced_is_the_defaults():
    assert DEFAULTS.look == "balanced" and TransferParams(look="balanced") == DEFAULTS
    assert LOOKS["balanced"] == {}


def test_looks_leave_size_and_time_to_the_caller_and_device():
    device_fields = {name for defaults in DEVICE_DEFAULTS.values() for name in defaults}
    for values in LOOKS.values():
        assert not set(values) & (device_fields | {"max_size", "steps"})


def test_explicit_parameters_win_over_the_look():
    params = TransferParams(look="painterly", style_weight=7.0)
    assert params.style_weight == 7.0
    assert params.style_layer_weights == LOOKS["painterly"]["style_layer_weights"]
    assert params.model_fields_set == {"look", "style_weight"}
    own_layers = TransferParams(look="texture", style_layer_weights=None)
    assert own_layers.style_layer_weights is None and own_layers.style_weight == LOOKS["texture"]["style_weight"]


def test_the_record_keeps_the_look_and_the_values_applied():
    record = TransferParams(look="painterly", seed=1).to_dict()
    assert record["look"] == "painterly" and record["style_weight"] == LOOKS["painterly"]["style_weight"]
    assert TransferParams.from_dict(record) == TransferParams(look="painterly", seed=1)
    # An edited record (its values are applied ones) is taken as it is, not refilled from its look.
    assert TransferParams.from_dict({**record, "style_weight": 2.0}).style_weight == 2.0


def test_an_unknown_look_is_refused_naming_the_known_ones():
    with pytest.raises(ValidationError) as refused:
        TransferParams.model_validate({"look": "impressionist"})
    message = str(refused.value)
    assert all(f"'{name}'" in message for name in LOOK_NAMES)


def test_device_defaults_keep_the_look_and_the_explicit_values():
    params = TransferParams(look="painterly", style_weight=40.0)
    on_gpu = for_device(params, "cuda", explicit=params.model_fields_set)
    assert (on_gpu.look, on_gpu.style_weight) == ("painterly", 40.0)
    assert on_gpu.style_layer_weights == LOOKS["painterly"]["style_layer_weights"]
    assert (on_gpu.max_size, on_gpu.steps) == (DEVICE_DEFAULTS["cuda"]["max_size"], DEVICE_DEFAULTS["cuda"]["steps"])


def test_look_is_a_flag_with_its_choices():
    from nst_cli.options import add_param_arguments, params_from_args

    assert "look" in api_fields()
    parser = argparse.ArgumentParser()
    add_param_arguments(parser)
    params = params_from_args(parser.parse_args(["--look", "subtle", "--tv-weight", "1"]))
    assert params.model_fields_set == {"look", "tv_weight"}
    assert params.style_weight == LOOKS["subtle"]["style_weight"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--look", "impressionist"])
