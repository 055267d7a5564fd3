"""`nst submit/status/cancel/jobs` as a user runs them (.venv/bin/nst subprocesses) against the real service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from nst_client import NstClient
from nst_shared.looks import LOOKS
from tests.conftest import ROOT, free_port, make_image, wait_until

NST = str(ROOT / ".venv" / "bin" / "nst")


@pytest.fixture
def images(tmp_path):
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    content.write_bytes(make_image(80, 60, seed=4))
    style.write_bytes(make_image(64, 64, seed=5))
    return content, style


def nst(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NST, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NST_SERVER": "http://127.0.0.1:9", **(env or {})},
    )


def test_submit_wait_output_then_status_and_jobs(service_url, images, tmp_path):
    content, style = images
    out = tmp_path / "result.png"
    done = nst(
        "submit",
        str(content),
        str(style),
        "--max_size",
        "64",
        "--steps",
        "4",
        "--wait",
        "--output",
        str(out),
        env={"NST_SERVER": service_url},
    )  # the server from the environment
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip().splitlines()[0]
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (64, 48)
    assert "4/4" in done.stderr  # the progress bar reached the last step

    status = nst("status", job_id, "--server", service_url)
    assert status.returncode == 0 and "succeeded" in status.stdout
    as_json = json.loads(nst("status", job_id, "--json", "--server", service_url).stdout)
    assert as_json["id"] == job_id and as_json["params"]["steps"] == 4
    jobs = nst("jobs", "--limit", "100", "--server", service_url)
    assert jobs.returncode == 0 and job_id in jobs.stdout
    again = nst("cancel", job_id, "--server", service_url)
    assert again.returncode == 2 and "job_finished" in again.stderr


def test_exit_codes_for_refusals_and_an_absent_service(service_url, images, tmp_path):
    content, style = images
    out_of_range = nst("submit", str(content), str(style), "--steps", "5000", "--server", service_url)
    assert out_of_range.returncode == 2 and "--steps" in out_of_range.stderr
    missing = nst("submit", str(tmp_path / "nope.png"), str(style), "--server", service_url)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a picture")
    refused = nst("submit", str(not_image), str(style), "--server", service_url)
    assert refused.returncode == 2 and "content" in refused.stderr
    unknown = nst("status", "no-such-job", "--server", service_url)
    assert unknown.returncode == 6 and "job_not_found" in unknown.stderr
    down = nst("jobs", "--server", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 3 and "Traceback" not in down.stderr
    assert "exit status" in nst("submit", "--help").stdout


def _start_long_job(service_url: str, content: Path, style: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [
            NST,
            "submit",
            str(content),
            str(style),
            "--max_size",
            "96",
            "--steps",
            "1000",
            "--wait",
            "--server",
            service_url,
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background (`scripts/test &`) ignores SIGINT, and children inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout is not None
    job_id = process.stdout.readline().strip()
    with NstClient(service_url) as client:
        wait_until(lambda: client.get(job_id).status == "running", timeout_s=60, what="the job to run")
    return process, job_id


def test_ctrl_c_cancels_the_job_on_the_server(service_url, images):
    process, job_id = _start_long_job(service_url, *images)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130 and "canceled" in stderr
    with NstClient(service_url) as client:
        assert client.wait(job_id, timeout_s=30).status == "canceled"
    assert nst("status", job_id, "--server", service_url).returncode == 5


def test_ctrl_c_with_detach_leaves_the_job_running(service_url, images):
    process, job_id = _start_long_job(service_url, *images, "--detach")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130 and "detached" in stderr
    with NstClient(service_url) as client:
        assert client.get(job_id).status == "running"
        canceled = nst("cancel", job_id, "--server", service_url)
        assert canceled.returncode == 0, canceled.stderr
        assert client.wait(job_id, timeout_s=30).status == "canceled"


def test_nst_finish_ends_a_waiting_submit_with_its_picture(service_url, images, tmp_path):
    out = tmp_path / "early.png"
    process, job_id = _start_long_job(service_url, *images, "--output", str(out))
    finished = nst("finish", job_id, "--server", service_url)
    assert finished.returncode == 0 and "finishing after the current step" in finished.stdout, finished.stderr
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    with Image.open(out) as image:
        assert image.size == (96, 72)
    again = nst("finish", job_id, "--server", service_url)
    assert again.returncode == 2 and "job_finished" in again.stderr


def test_submit_finish_after_keeps_the_picture_painted_so_far(service_url, images, tmp_path):
    content, style = images
    out = tmp_path / "budget.png"
    done = nst(
        "submit",
        str(content),
        str(style),
        "--max_size",
        "96",
        "--steps",
        "1000",
        "--finish-after",
        "2",
        "--output",
        str(out),
        "--server",
        service_url,
    )
    assert done.returncode == 0, done.stderr
    with Image.open(out) as image:
        assert image.size == (96, 72)
    with NstClient(service_url) as client:
        job = client.get(done.stdout.strip().splitlines()[0])
    assert job.status == "succeeded" and job.steps_done is not None and 1 <= job.steps_done < 1000
    assert job.progress is not None and job.progress.elapsed_s is not None and job.progress.elapsed_s >= 2


def test_timeout_exits_4_and_the_job_goes_on(service_url, images):
    content, style = images
    timed_out = nst(
        "submit",
        str(content),
        str(style),
        "--max_size",
        "96",
        "--steps",
        "1000",
        "--wait",
        "--timeout",
        "2",
        "--server",
        service_url,
    )
    assert timed_out.returncode == 4, timed_out.stderr
    job_id = timed_out.stdout.strip()
    with NstClient(service_url) as client:
        assert client.get(job_id).status in ("queued", "running")
        client.cancel(job_id)
        assert client.wait(job_id, timeout_s=30).status == "canceled"


def test_submit_style_masks_and_color_mode(service_url, images, tmp_path):
    content, style = images
    mask = tmp_path / "mask.png"
    mask.write_bytes(make_image(80, 60, seed=6))
    done = nst(
        "submit",
        str(content),
        str(style),
        "--style-mask",
        str(mask),
        "--color-mode",
        "luminance",
        "--max_size",
        "64",
        "--steps",
        "2",
        "--wait",
        "--server",
        service_url,
    )
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip().splitlines()[0]
    as_json = json.loads(nst("status", job_id, "--json", "--server", service_url).stdout)
    assert as_json["status"] == "succeeded" and as_json["params"]["color_mode"] == "luminance"
    extra = nst(
        "submit",
        str(content),
        str(style),
        "--style-mask",
        str(mask),
        "--style-mask",
        str(mask),
        "--server",
        service_url,
    )
    assert extra.returncode == 2 and "style_mask: 2 mask(s) for 1 style image(s)" in extra.stderr


def test_submit_with_a_look(service_url, images):
    content, style = images
    submitted = nst(
        "submit",
        str(content),
        str(style),
        "--look",
        "texture",
        "--max_size",
        "64",
        "--steps",
        "2",
        "--server",
        service_url,
    )
    assert submitted.returncode == 0, submitted.stderr
    params = json.loads(nst("status", submitted.stdout.strip(), "--json", "--server", service_url).stdout)["params"]
    assert params["look"] == "texture" and params["style_weight"] == LOOKS["texture"]["style_weight"]
    unknown = nst("submit", str(content), str(style), "--look", "impressionist", "--server", service_url)
    assert unknown.returncode == 2 and "painterly" in unknown.stderr


def test_submit_sweep_saves_the_contact_sheet(service_url, images, tmp_path):
    from nst_shared import provenance

    content, style = images
    sheet = tmp_path / "sheet.png"
    done = nst(
        "submit",
        str(content),
        str(style),
        "--max_size",
        "64",
        "--steps",
        "2",
        "--sweep",
        "style_weight=5,15,45",
        "--output",
        str(sheet),
        "--server",
        service_url,
    )
    assert done.returncode == 0, done.stderr
    sweep_id = done.stdout.strip().splitlines()[0]
    assert "3/3 cells" in done.stderr
    record = provenance.read(sheet.read_bytes())
    assert record["sweep"]["id"] == sweep_id and record["sweep"]["axes"] == {"style_weight": ["5", "15", "45"]}
    assert nst("info", str(sheet)).returncode == 0  # nst info reads a sheet as any picture nst made
    with NstClient(service_url) as client:
        assert [c.status for c in client.get_sweep(sweep_id).cells] == ["succeeded"] * 3


def test_submit_sweep_refusals_exit_2(service_url, images):
    content, style = images
    malformed = nst("submit", str(content), str(style), "--sweep", "style_weight", "--server", service_url)
    assert malformed.returncode == 2 and "name=value" in malformed.stderr
    refused = nst("submit", str(content), str(style), "--sweep", "colour=1,2", "--server", service_url)
    assert refused.returncode == 2 and "cannot be swept" in refused.stderr


def test_submit_format_option(service_url, images, tmp_path):
    content, style = images
    out = tmp_path / "result.webp"
    args = ("--max_size", "64", "--steps", "2", "--format", "webp", "--quality", "80")
    done = nst("submit", str(content), str(style), *args, "--output", str(out), "--server", service_url)
    assert done.returncode == 0, done.stderr
    with Image.open(out) as image:
        assert image.format == "WEBP"
    bad = nst("submit", str(content), str(style), "--format", "gif", "--server", service_url)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
