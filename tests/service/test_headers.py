"""Security headers on every answer of the real API, and the docs pages' own script hashes."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from tests.service.test_jobs import submit

SELF_ONLY = {
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' blob: data:",
    "media-src": "'self' blob:",
    "connect-src": "'self'",
    "default-src": "'none'",
    "frame-ancestors": "'none'",
}


def policy(headers) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))


def assert_secure(response) -> dict[str, str]:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    return policy(response.headers)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/static/app.js",
        "/static/style.css",
        "/api/config",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/jobs",
        "/jobs/nope",
        "/examples/chelsea.jpg",
        "/no-such-page",
    ],
)
def test_every_answer_carries_the_security_headers(service, path):
    with service.client() as client:
        response = client.get(path)
    directives = assert_secure(response)
    assert {k: v for k, v in directives.items() if k in SELF_ONLY} == SELF_ONLY


def test_refused_and_created_answers_carry_them_too(service):
    with service.client() as client:
        created = submit(client)
        assert created.status_code == 202 and assert_secure(created)["frame-ancestors"] == "'none'"
        broken = client.post("/jobs", content=b"x" * 1000, headers={"content-type": "multipart/form-data; boundary=x"})
        assert broken.status_code == 400 and assert_secure(broken)["script-src"] == "'self'"


def test_docs_page_allows_exactly_its_own_inline_script(service):
    with service.client() as client:
        page = client.get("/docs")
    inline = re.findall(rb"<script>(.*?)</script>", page.content, re.S)
    assert len(inline) == 1 and b"SwaggerUIBundle(" in inline[0]
    digest = base64.b64encode(hashlib.sha256(inline[0]).digest()).decode()
    assert assert_secure(page)["script-src"] == f"'self' 'sha256-{digest}'"
    assert "unsafe" not in page.headers["content-security-policy"]
    assert int(page.headers["content-length"]) == len(page.content)


def test_redoc_keeps_scripts_hashed(service):
    with service.client() as client:
        page = client.get("/redoc")
    directives = assert_secure(page)
    assert directives["script-src"] == "'self'"  # its one script is a file of this origin
    assert directives["style-src"] == "'self' 'unsafe-inline'" and directives["worker-src"] == "blob:"
