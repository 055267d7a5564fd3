"""Style masks and colour modes through the real API: stored by key, painted by a real worker, refused clearly."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_image
from tests.service.test_jobs import wait_status

FORM = {"max_size": "64", "steps": "4", "scales": "1"}


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def left_half(width: int = 80, height: int = 60) -> Image.Image:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[:, : width // 2] = 255
    return Image.fromarray(mask, mode="L")


def post(client: httpx.Client, *, styles: int = 1, masks: list[bytes] = (), **form: str) -> httpx.Response:
    files = [("content", ("content.png", make_image(80, 60, seed=1), "image/png"))]
    files += [("style", (f"style{i}.png", make_image(64, 64, seed=10 + i), "image/png")) for i in range(styles)]
    files += [("style_mask", (f"mask{i}.png", data, "image/png")) for i, data in enumerate(masks)]
    return client.post("/jobs", files=files, data={**FORM, **form})


def test_masked_job_keeps_the_photo_where_no_mask_reaches(painting_service):
    with painting_service.client() as client:
        response = post(client, masks=[png(left_half())], style_weight="1000", steps="8")
        assert response.status_code == 202, response.text
        wait_status(client, response.json()["id"], {"succeeded"})
        result = client.get(f"/jobs/{response.json()['id']}/result")
    out = np.asarray(Image.open(io.BytesIO(result.content)).convert("RGB"), dtype=float)
    photo = Image.open(io.BytesIO(make_image(80, 60, seed=1))).resize((64, 48), Image.Resampling.LANCZOS)
    photo_px = np.asarray(photo, dtype=float)
    assert out.shape == (48, 64, 3)
    assert np.abs(out[:, 38:] - photo_px[:, 38:]).max() <= 1  # right of the mask, past its feathered edge
    assert np.abs(out[:, :26] - photo_px[:, :26]).mean() > 3  # painted under the mask


@pytest.mark.parametrize(
    "styles, masks, code, message",
    [
        (1, [b"not an image at all"], "unreadable_image", "style_mask: the file is not an image"),
        (1, [png(left_half()), png(left_half())], "invalid_parameter", "style_mask: 2 mask(s) for 1 style image(s)"),
        (2, [png(left_half())], "invalid_parameter", "style_mask: 1 mask(s) for 2 style image(s)"),
        (1, [png(Image.new("L", (80, 60), 0))], "empty_mask", "style_mask: style mask 1 is black everywhere"),
    ],
)
def test_submit_bad_masks_refused(service, styles, masks, code, message):
    with service.client() as client:
        response = post(client, styles=styles, masks=masks)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["field"] == "style_mask" and error["message"].startswith(message)


def test_color_mode_and_its_alias(service):
    with service.client() as client:
        alias = post(client, preserve_colors="true")
        match = post(client, color_mode="match")
        both = post(client, preserve_colors="true", color_mode="match")
    assert alias.status_code == 202 and alias.json()["params"]["color_mode"] == "luminance"
    assert "preserve_colors" not in alias.json()["params"]
    assert match.status_code == 202 and match.json()["params"]["color_mode"] == "match"
    assert both.status_code == 422
    assert both.json()["error"]["message"] == (
        "preserve_colors=true contradicts color_mode=match; give color_mode alone"
    )
