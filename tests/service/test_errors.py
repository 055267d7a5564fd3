"""Every error is JSON {"error": {"code", "message", "field"?}} with the right status, never a 500."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from tests.conftest import make_image, start_stack, wait_until
from tests.service.test_jobs import submit, wait_status


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_get_job_unknown_404(service):
    with service.client() as client:
        assert error_of(client.get("/jobs/nope"), 404)["code"] == "job_not_found"
        assert error_of(client.post("/jobs/nope/cancel"), 404)["code"] == "job_not_found"
        assert error_of(client.get("/jobs/nope/result"), 404)["code"] == "job_not_found"


def test_job_id_naming_another_key_of_the_job_404(service):
    with service.client() as client:
        job = submit(client, steps="1000", max_size="96", preview_every="0").json()
        wait_status(client, job["id"], {"running"}, timeout_s=60)  # its events stream and heartbeat exist
        try:
            for suffix, paths in (
                (":events", ("", "/events", "/result", "/preview", "/cancel")),
                (":heartbeat", ("", "/result", "/preview", "/events")),
            ):
                for path in paths:
                    error = error_of(
                        client.get(f"/jobs/{job['id']}{suffix}{path}")
                        if path != "/cancel"
                        else client.post(f"/jobs/{job['id']}{suffix}{path}"),
                        404,
                    )
                    assert error["code"] == "job_not_found", (suffix, path)
                assert error_of(client.delete(f"/jobs/{job['id']}{suffix}"), 404)["code"] == "job_not_found"
            for odd in (job["id"].upper(), job["id"] + "0", job["id"][:-1], "0" * 31 + "\u0661"):
                assert error_of(client.get(f"/jobs/{odd}"), 404)["code"] == "job_not_found", odd
        finally:
            client.post(f"/jobs/{job['id']}/cancel")
        assert wait_status(client, job["id"], {"canceled"})["status"] == "canceled"


def test_submit_job_bad_parameters_422(service):
    with service.client() as client:
        for form, field in (
            ({"steps": "0"}, "steps"),
            ({"style_weight": "-1"}, "style_weight"),
            ({"init": "zebra"}, "init"),
            ({"steps": "many"}, "steps"),
            ({"style_blend": "0.5,0.5"}, "style_blend"),
            ({"max_size": "5000"}, "max_size"),
            ({"colour": "red"}, "colour"),
            ({"content_weight": "nan"}, "content_weight"),
        ):
            error = error_of(submit(client, **form), 422)
            assert error["field"] == field, (form, error)
            assert error["message"]


def test_submit_job_unreadable_or_foreign_images(service):
    with service.client() as client:
        garbage = error_of(submit(client, content=b"not an image at all"), 422)
        assert garbage["code"] == "unreadable_image" and garbage["field"] == "content"
        assert error_of(submit(client, content=b""), 422)["code"] == "unreadable_image"
        truncated = make_image(80, 60, fmt="JPEG")[:300]
        assert error_of(submit(client, content=truncated), 422)["code"] == "unreadable_image"
        gif = io.BytesIO()
        Image.new("RGB", (64, 64)).save(gif, format="GIF")
        assert error_of(submit(client, content=gif.getvalue()), 415)["code"] == "unsupported_format"
        svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"></svg>'
        assert error_of(submit(client, content=svg), 415)["code"] == "unsupported_format"
        thin = make_image(400, 10)
        assert error_of(submit(client, content=thin), 422)["code"] == "image_too_small"
        missing = client.post("/jobs", files=[("content", ("c.png", make_image(), "image/png"))])
        assert error_of(missing, 422)["field"] == "style"


def test_submit_job_too_large_413(service):
    noise = np.random.default_rng(0).integers(0, 255, (1100, 1100, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")  # ~3.6 MB, over this stack's 3 MB per file
    with service.client() as client:
        assert error_of(submit(client, content=buffer.getvalue()), 413)["code"] == "file_too_large"


def test_result_while_running_409(service):
    with service.client() as client:
        job = submit(client, steps="1000", max_size="96", preview_every="0").json()
        wait_status(client, job["id"], {"running"}, timeout_s=60)
        assert error_of(client.get(f"/jobs/{job['id']}/result"), 409)["code"] == "result_not_ready"
        client.post(f"/jobs/{job['id']}/cancel")
        wait_status(client, job["id"], {"canceled"})
        assert error_of(client.post(f"/jobs/{job['id']}/cancel"), 409)["code"] == "job_finished"


def test_redis_down_503_and_recovery(tmp_path, redis_server):
    from tests.conftest import RedisServer

    own = RedisServer(tmp_path / "redis")
    stack = start_stack(tmp_path, own.url, workers=0, rate_limit_requests_per_min=1000)  # the limiter too
    try:
        with stack.client() as client:
            own.stop()
            error = error_of(client.get("/jobs/anything"), 503)
            assert error["code"] == "redis_unavailable"
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200
            own.start()
            wait_until(
                lambda: client.get("/jobs/anything").status_code == 404,
                timeout_s=20,
                what="API recovering after Redis restart",
            )
    finally:
        stack.stop()
        own.stop()


def test_405_allows_every_method_of_the_resource(service):
    job_id = "0" * 32
    with service.client() as client:
        for method, path, allowed in (
            ("PUT", "/jobs", "GET, POST"),
            ("PATCH", f"/jobs/{job_id}", "DELETE, GET"),
            ("GET", f"/jobs/{job_id}/cancel", "POST"),
            ("GET", "/sweeps", "POST"),
            ("PUT", f"/sweeps/{job_id}", "DELETE, GET"),
        ):
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == allowed and response.json()["error"]["code"] == "method_not_allowed"
