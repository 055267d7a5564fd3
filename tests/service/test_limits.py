"""Limits enforced before any work: budget, queue length, hostile parameters and images; each a 4xx naming it."""

from __future__ import annotations

import io
import json
import socket

import pytest
import redis
from PIL import Image

from nst_shared import capacity
from tests.conftest import make_image, start_stack, wait_until
from tests.service.test_errors import error_of
from tests.service.test_jobs import submit


def test_submit_job_over_budget_422(service):
    with service.client() as client:
        # 80x60 content at max_size 1024 is 1024x768 = 0.79 MP; 1000 steps of it in one scale is over the 500
        # budget, spread over the default three scales they cost 323 and pass.
        error = error_of(submit(client, steps="1000", max_size="1024", scales="1"), 422)
        assert error["code"] == "over_budget" and error["field"] == "steps"
        assert "1024x768" in error["message"] and "500" in error["message"]


def test_submit_job_no_worker_could_hold_422_with_estimate(tmp_path, redis_server):
    # The worker announces 2 GB; a 4096 px print needs more than that even in blocks, 1024 px fits.
    stack = start_stack(
        tmp_path, redis_server.url, engine="tests.engines:InstantEngine", worker_memory_gb=2, max_size_px=8192
    )
    try:
        offers = capacity.offers(redis.Redis.from_url(stack.redis_url))
        assert [(o.budget_bytes, o.device) for o in offers] == [(2 * 2**30, "cpu")]
        with stack.client() as client:
            error = error_of(submit(client, max_size="4096", steps="30"), 422)
            assert error["code"] == "too_large_for_workers" and error["field"] == "max_size"
            assert "4096x3072" in error["message"] and "GB" in error["message"] and "2.0 GB" in error["message"]
            assert submit(client, max_size="1024", steps="3").status_code == 202
    finally:
        stack.stop()


def test_submit_job_queue_full_503_with_retry_after(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, workers=0, max_queued_jobs=2)
    try:
        with stack.client() as client:
            assert [submit(client).status_code for _ in range(2)] == [202, 202]
            full = submit(client)
            assert error_of(full, 503)["code"] == "queue_full"
            assert int(full.headers["Retry-After"]) > 0
            assert client.get("/jobs").json()["total"] == 2  # the refused one left nothing behind
    finally:
        stack.stop()


@pytest.mark.parametrize(
    "form, field",
    [
        ({"steps": "1e99"}, "steps"),
        ({"steps": "99999999999999999999999999"}, "steps"),
        ({"steps": "1.5"}, "steps"),
        ({"steps": " "}, "steps"),
        ({"max_size": "nan"}, "max_size"),
        ({"max_size": "-64"}, "max_size"),
        ({"seed": "-1"}, "seed"),
        ({"seed": "1e30"}, "seed"),
        ({"style_weight": "inf"}, "style_weight"),
        ({"style_weight": "1e400"}, "style_weight"),
        ({"content_weight": "-inf"}, "content_weight"),
        ({"content_weight": "0x10"}, "content_weight"),
        ({"preserve_colors": "maybe"}, "preserve_colors"),
        ({"init": "CONTENT"}, "init"),
        ({"style_scale": "NaN"}, "style_scale"),
        ({"tv_weight": "[1]"}, "tv_weight"),
        ({"style_blend": "nan"}, "style_blend"),
        ({"style_blend": "1,2,3"}, "style_blend"),
        ({"style_blend": "-1"}, "style_blend"),
        ({"early_stop_tolerance": "9"}, "early_stop_tolerance"),
        ({"scales": "0"}, "scales"),
        ({"preview_every": "-5"}, "preview_every"),
        ({"webhook_events": "everything"}, "webhook_events"),
    ],
)
def test_submit_job_malformed_parameter_422(service, form, field):
    with service.client() as client:
        error = error_of(submit(client, **form), 422)
        assert error["field"] == field and field.split("_")[0] in error["message"], error


@pytest.mark.parametrize("width, height, part", [(10_000, 1, "content"), (1, 10_000, "content"), (3000, 2, "style")])
def test_submit_job_absurd_aspect_ratio_422(service, width, height, part):
    odd = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(odd, format="PNG")
    files = {
        "content": odd.getvalue() if part == "content" else make_image(80, 60),
        "style": odd.getvalue() if part == "style" else make_image(64, 64),
    }
    with service.client() as client:
        response = client.post(
            "/jobs",
            data={"max_size": "64", "steps": "2"},
            files=[(name, (f"{name}.png", data, "image/png")) for name, data in files.items()],
        )
        error = error_of(response, 422)
        assert error["code"] == "image_too_small" and error["field"] == part and "aspect ratio" in error["message"]


def test_submit_job_type_from_bytes_not_name(service):
    with service.client() as client:
        jpeg_named_png = ("content", ("photo.png", make_image(80, 60, fmt="JPEG"), "image/png"))
        style = ("style", ("s.gif", make_image(64, 64), "image/gif"))
        assert (
            client.post("/jobs", files=[jpeg_named_png, style], data={"steps": "2", "max_size": "64"}).status_code
            == 202
        )
        gif = io.BytesIO()
        Image.new("RGB", (64, 64)).save(gif, format="GIF")
        gif_named_png = ("content", ("photo.png", gif.getvalue(), "image/png"))
        assert (
            error_of(client.post("/jobs", files=[gif_named_png, style], data={"steps": "2"}), 415)["field"] == "content"
        )


def start_slow_upload(url: str, *, length: int = 1_000_000) -> socket.socket:
    """A POST /jobs whose headers and first bytes arrive, the rest never: an upload held in flight."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    connection.sendall(
        f"POST /jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {length}\r\n\r\n--b\r\n".encode()
    )
    return connection


def test_submit_job_past_the_uploads_in_flight_503_with_retry_after(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, workers=0, max_uploads_in_flight=2)
    slow = [start_slow_upload(stack.url) for _ in range(2)]
    try:
        with stack.client() as client:
            refused = wait_until(
                lambda: (r := submit(client)).status_code == 503 and r,
                timeout_s=30,
                what="a third upload refused",
            )
            assert refused.json()["error"]["code"] == "too_many_uploads"
            assert refused.headers["Retry-After"]
            for connection in slow:
                connection.close()
            wait_until(lambda: submit(client).status_code == 202, timeout_s=30, what="uploads taken again")
    finally:
        for connection in slow:
            connection.close()
        stack.stop()


def test_an_upload_the_client_abandons_is_one_499_line_not_a_server_error(tmp_path, redis_server):
    stack = start_stack(tmp_path, redis_server.url, workers=0)
    log = stack.log_dir / "api.log"
    try:
        slow = [start_slow_upload(stack.url) for _ in range(3)]
        with stack.client() as client:
            wait_until(lambda: client.get("/healthz").status_code == 200, timeout_s=10, what="API up")
            for connection in slow:
                connection.close()
            wait_until(lambda: log.read_text().count("POST /jobs") >= 3, timeout_s=30, what="three access lines")
            posts = [json.loads(line) for line in log.read_text().splitlines() if "POST /jobs" in line]
            assert [p["status"] for p in posts] == [499] * 3
            text = log.read_text()
            assert "Traceback" not in text and '"level": "ERROR"' not in text
            assert "nst_client_disconnects_total 3.0" in client.get("/metrics").text
    finally:
        stack.stop()
