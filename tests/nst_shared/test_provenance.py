"""The record a picture carries (nst_shared/provenance.py): written into PNG, JPEG and WebP, read back."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from nst_shared import provenance
from nst_shared.images import encode_image
from nst_shared.params import SEED_MAX, TransferParams, with_seed
from tests.conftest import make_image


def _record(**params: object) -> dict:
    return provenance.build(
        TransferParams(seed=7, **params),
        steps_done=5,
        device="cpu",
        precision="fp32",
        content=b"content bytes",
        styles=[b"style one", b"style two"],
    )


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_record_round_trips_through_each_output_format(fmt):
    record = _record(style_blend=(0.7, 0.3))
    data = encode_image(Image.open(io.BytesIO(make_image(40, 32))), fmt, record=record)
    assert Image.open(io.BytesIO(data)).format == fmt
    assert provenance.read(data) == record
    assert record["params"]["style_blend"] == [0.7, 0.3] and record["seed"] == 7 and record["steps_done"] == 5
    assert record["sha256"] == {
        "content": provenance.sha256(b"content bytes"),
        "styles": [provenance.sha256(b"style one"), provenance.sha256(b"style two")],
        "masks": [],
    }
    assert record["engine"]["name"] == "nst" and record["engine"]["version"] != "unknown"


def test_png_record_is_a_text_chunk_named_nst():
    data = encode_image(Image.open(io.BytesIO(make_image(40, 32))), "PNG", record=_record())
    chunk = Image.open(io.BytesIO(data)).text["nst"]
    assert json.loads(chunk)["params"]["seed"] == 7
    assert b"tEXtnst\x00" in data


def test_files_without_a_record_read_as_none():
    assert provenance.read(make_image(40, 32)) is None
    assert provenance.read(make_image(40, 32, fmt="JPEG")) is None
    assert provenance.read(b"not an image") is None


def test_a_record_needs_the_seed_the_run_used():
    with pytest.raises(ValueError, match="seed"):
        provenance.build(TransferParams(), steps_done=1, device="cpu", precision="fp32", content=b"", styles=[])


def test_an_unset_seed_is_drawn_within_its_bounds():
    drawn = {with_seed(TransferParams()).seed for _ in range(20)}
    assert all(seed is not None and 0 <= seed <= SEED_MAX for seed in drawn) and len(drawn) > 1
    assert with_seed(TransferParams(seed=3)).seed == 3
