from nst_shared.params import DEFAULTS, TransferParams, param_fields


def test_params_round_trip_through_plain_data():
    params = TransferParams(style_blend=(0.7, 0.3), seed=3)
    assert TransferParams.from_dict(params.to_dict()) == params
    assert isinstance(params.to_dict()["style_layers"], list)


def test_every_field_documents_itself():
    for field in param_fields():
        assert field.metadata["help"], field.name
    assert DEFAULTS.content_layers == ("conv4_2",) and len(DEFAULTS.style_layers) == 5
