"""The OpenAPI document works for generated clients: a Python client generated from the running app's
document submits, polls and downloads untouched, and TypeScript types generated from it compile."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from nst_shared.params import api_fields
from nst_shared.settings import Settings
from tests.conftest import ROOT, make_image, start_stack

BIN = Path(sys.executable).parent
OPERATIONS = {
    "create_job",
    "list_jobs",
    "get_job",
    "delete_job",
    "cancel_job",
    "finish_job",
    "get_result",
    "get_preview",
    "stream_events",
    "create_sweep",
    "get_sweep",
    "get_sweep_sheet",
    "cancel_sweep",
    "delete_sweep",
    "healthz",
    "readyz",
    "get_metrics",
}


def document(**settings: object) -> dict:
    from service.app import create_app

    return create_app(Settings(**settings)).openapi()


def operations(doc: dict) -> dict[str, dict]:
    return {op["operationId"]: op for path in doc["paths"].values() for op in path.values()}


def test_operations_have_verb_ids_tags_and_the_one_error_schema():
    doc = document()
    ops = operations(doc)
    assert set(ops) == OPERATIONS
    assert all(op["tags"] for op in ops.values())
    statuses = set()
    for name, op in ops.items():
        for status, response in op["responses"].items():
            if int(status) >= 400:
                statuses.add(int(status))
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (name, status)
    assert statuses == {401, 404, 409, 413, 415, 422, 429, 503}
    assert "HTTPValidationError" not in json.dumps(doc)
    assert {op for op, spec in ops.items() if spec.get("security")} == OPERATIONS - {"healthz", "readyz", "get_metrics"}
    assert {"HTTPBearer", "APIKeyHeader"} <= set(doc["components"]["securitySchemes"])


def test_submission_form_is_one_flat_schema_from_the_parameter_model():
    doc = document(max_size_px=512, max_styles=3)
    body = operations(doc)["create_job"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    form = doc["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert "allOf" not in form and form["required"] == ["content", "style"] and not form["additionalProperties"]
    props = form["properties"]
    assert props["content"] == {"type": "string", "format": "binary", "description": props["content"]["description"]}
    assert props["style"]["items"] == {"type": "string", "format": "binary"} and props["style"]["maxItems"] == 3
    assert (
        props["style_mask"]["items"] == {"type": "string", "format": "binary"} and "minItems" not in props["style_mask"]
    )
    options = {"format", "quality", "video_format", "cancel_after", "ttl_s"}
    assert set(props) == {"content", "style", "style_mask", *api_fields(), "webhook_url", "webhook_events", *options}
    assert props["format"]["enum"] == ["png", "webp", "jpeg", "avif"] and props["quality"]["maximum"] == 100
    assert props["color_mode"]["enum"] == ["style", "luminance", "match"] and "default" not in props["preserve_colors"]
    assert props["max_size"]["maximum"] == 512 and props["init"]["enum"] == ["content", "noise", "style"]
    assert props["seed"]["type"] == "integer" and props["style_blend"]["type"] == "string"


def test_submission_forms_declare_the_image_types_of_their_files():
    ops = operations(document())
    pictures = {"image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff"}
    for operation in ("create_job", "create_sweep"):
        body = ops[operation]["requestBody"]["content"]["multipart/form-data"]
        for name in ("content", "style", "style_mask"):
            types = {t.strip() for t in body["encoding"][name]["contentType"].split(",")}
            clip = operation == "create_job" and name == "content"  # a job's content may be a clip, a sweep's not
            clips = {"video/mp4", "video/quicktime", "video/webm", "image/gif"} if clip else set()
            assert types == pictures | clips, (operation, name)


def test_create_job_links_to_the_jobs_own_operations():
    ops = operations(document())
    for status in ("200", "202"):
        links = ops["create_job"]["responses"][status]["links"]
        assert {link["operationId"] for link in links.values()} == {
            "get_job",
            "stream_events",
            "get_result",
            "get_preview",
            "cancel_job",
            "finish_job",
            "delete_job",
        }
        for link in links.values():
            target = ops[link["operationId"]]
            assert {p["name"] for p in target["parameters"] if p["in"] == "path"} == {"job_id"}
            assert link["parameters"] == {"job_id": "$response.body#/id"}
    prefer = next(p for p in ops["create_job"]["parameters"] if p["name"] == "prefer")
    assert prefer["in"] == "header"


def test_create_sweep_links_to_the_sweeps_own_operations_and_takes_prefer():
    ops = operations(document())
    for status in ("200", "202"):
        links = ops["create_sweep"]["responses"][status]["links"]
        assert {link["operationId"] for link in links.values()} == {
            "get_sweep",
            "get_sweep_sheet",
            "cancel_sweep",
            "delete_sweep",
        }
        for link in links.values():
            assert link["parameters"] == {"sweep_id": "$response.body#/id"}
    prefer = next(p for p in ops["create_sweep"]["parameters"] if p["name"] == "prefer")
    assert prefer["in"] == "header"


def test_binary_results_and_the_event_stream_are_declared_as_such():
    ops = operations(document())
    for name in ("get_result", "get_preview"):
        content = ops[name]["responses"]["200"]["content"]
        for media in ("image/png", "image/webp", "image/jpeg", "image/avif", "application/octet-stream"):
            assert content[media]["schema"] == {"type": "string", "format": "binary"}
    assert {"video/mp4", "video/webm"} <= set(ops["get_result"]["responses"]["200"]["content"])
    assert next(iter(ops["get_preview"]["responses"]["200"]["content"])) == "image/webp"
    events = ops["stream_events"]["responses"]["200"]
    assert events["content"]["text/event-stream"]["schema"] == {"type": "string"}
    for kind in ("snapshot", "status", "progress", "preview", "completed"):
        assert f"`{kind}`" in events["description"]
    job_id = next(p for p in ops["get_job"]["parameters"] if p["name"] == "job_id")
    assert job_id["schema"]["pattern"] == "^[0-9a-f]{32}$"


def _generate_python_client(doc_path: Path, out: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # its ruff post-hooks
    done = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(doc_path),
            "--output-path",
            str(out),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


# docs/openapi.md's example: submit with two styles, poll to succeeded, download, with the generated package as is.
DOC = (ROOT / "docs" / "openapi.md").read_text()
EXAMPLE = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)[0]


# Masks ride along as a repeated file field: the generated model takes a list of files, like the styles.
MASKED = """
from nst_api import Client
from nst_api.api.jobs import create_job
from nst_api.models import JobSubmission, JobSubmissionColorMode
from nst_api.types import File

client = Client(base_url="URL", raise_on_unexpected_status=True)
photo, starry, wave, left, right = (File(payload=open(n, "rb"), file_name=n)
                                    for n in ("photo.jpg", "starry.jpg", "wave.jpg", "left.png", "right.png"))
body = JobSubmission(content=photo, style=[starry, wave], style_mask=[left, right], steps=3, max_size=64,
                     color_mode=JobSubmissionColorMode.MATCH)
print(create_job.sync(client=client, body=body).id)
"""


@pytest.mark.timeout(300)
def test_generated_python_client_submits_polls_and_downloads(tmp_path, redis_server):
    stack = start_stack(tmp_path / "stack", redis_server.url, engine="tests.engines:InstantEngine")
    try:
        doc_path = tmp_path / "openapi.json"
        doc_path.write_bytes(httpx.get(f"{stack.url}/openapi.json").content)
        output = _generate_python_client(doc_path, tmp_path / "nst_api")
        assert "warning" not in output.lower() and "error" not in output.lower(), output
        for name, seed in (("photo.jpg", 1), ("starry.jpg", 2), ("wave.jpg", 3)):
            (tmp_path / name).write_bytes(make_image(80 if name == "photo.jpg" else 64, 60, seed=seed, fmt="JPEG"))
        code = EXAMPLE.replace("http://127.0.0.1:8000", stack.url).replace("steps=60", "steps=3, max_size=64")
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        with Image.open(io.BytesIO((tmp_path / "out.png").read_bytes())) as image:
            assert image.format == "PNG" and image.size == (64, 48)
        [job] = httpx.get(f"{stack.url}/jobs").json()["items"]
        assert job["status"] == "succeeded" and job["styles"] == 2
        assert job["params"]["style_blend"] == [0.7, 0.3] and job["params"]["steps"] == 3
        result = f"{stack.url}/jobs/{job['id']}/result"
        assert httpx.get(result).headers["content-type"] == "image/png"
        as_bytes = httpx.get(result, headers={"Accept": "application/octet-stream"})
        assert as_bytes.headers["content-type"] == "application/octet-stream"
        assert as_bytes.content == (tmp_path / "out.png").read_bytes()

        for name, seed in (("left.png", 4), ("right.png", 5)):
            (tmp_path / name).write_bytes(make_image(80, 60, seed=seed))
        done = subprocess.run(
            [sys.executable, "-c", MASKED.replace("URL", stack.url)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        job_id = done.stdout.strip()
        assert httpx.get(f"{stack.url}/jobs/{job_id}").json()["params"]["color_mode"] == "match"
        for i, name in enumerate(("left.png", "right.png")):
            assert (stack.storage_dir / job_id / f"style-mask-{i}").read_bytes() == (tmp_path / name).read_bytes()
    finally:
        stack.stop()


USE_TYPES = """
import type { components, paths } from "./api";
type Submission = components["schemas"]["JobSubmission"];
const form: Submission = { content: "c", style: ["a", "b"], steps: 3, style_blend: "0.7,0.3", init: "noise" };
const png: paths["/jobs/{job_id}/result"]["get"]["responses"][200]["content"]["image/png"] = "";
const refused: paths["/jobs"]["post"]["responses"][422]["content"]["application/json"] = {
  error: { code: "invalid_parameter", message: "steps: ...", field: "steps" } };
export { form, png, refused };
"""


@pytest.mark.timeout(300)
def test_generated_typescript_types_compile(tmp_path):
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    tools = Path.home() / ".cache" / "nst-tests" / "openapi-typescript"  # installed once, reused
    tools.mkdir(parents=True, exist_ok=True)
    if not (tools / "node_modules" / ".bin" / "tsc").exists():
        installed = subprocess.run(
            [npm, "install", "--prefix", str(tools), "--no-audit", "--no-fund", "openapi-typescript@7", "typescript@5"],
            capture_output=True,
            text=True,
            timeout=240,
        )
        if installed.returncode != 0:
            pytest.skip(f"npm could not install openapi-typescript: {installed.stderr[-300:]}")
    (tmp_path / "openapi.json").write_text(json.dumps(document()))
    (tmp_path / "use.ts").write_text(USE_TYPES)
    binaries = tools / "node_modules" / ".bin"
    # Defaults are optional in a request: openapi-typescript would make a field with a default required.
    generated = subprocess.run(
        [str(binaries / "openapi-typescript"), "openapi.json", "-o", "api.d.ts", "--default-non-nullable", "false"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0 and "warn" not in generated.stderr.lower(), generated.stderr
    compiled = subprocess.run(
        [str(binaries / "tsc"), "--noEmit", "--strict", "use.ts", "api.d.ts"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
