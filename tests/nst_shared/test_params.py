from nst_shared.params import DEFAULTS, TransferParams, param_fields


def test_params_round_trip_through_plain_data():
    params = TransferParams(style_blend=(0.7, 0.3), seed=3)
    assert TransferParams.from_dict(params.to_dict()) == params
    assert isinstance(params.to_dict()["style_layers"], list)


def test_every_field_documents_itself():
    for field in param_fields():
        assert field.metadata["help"], field.name
    assert DEFAULTS.content_layers == ("conv4_2",) and len(DEFAULTS.style_layers) == 5


def test_device_defaults_replace_only_what_the_caller_left():
    from nst_shared.params import for_device

    params = TransferParams(steps=50)
    on_gpu = for_device(params, "cuda", explicit={"steps"})
    assert on_gpu.steps == 50 and on_gpu.max_size > DEFAULTS.max_size
    assert for_device(params, "cpu", explicit=set()) == params


def test_explicit_flags_seen_in_argv():
    from nst_cli.options import explicit_flags

    assert explicit_flags(["run", "--steps", "5", "--max_size=64", "--preserve-colors"]) == {
        "steps", "max_size", "preserve_colors"}
