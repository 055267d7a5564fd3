"""The web page in a real browser (Debian's chromium driven by Playwright) against `nst up`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from nst_shared.looks import LOOKS
from tests.conftest import ROOT, answers_ok, free_port, make_image, wait_until

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "web"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def stack_url(tmp_path_factory):
    """The whole stack exactly as the README runs it: `nst up`, with its embedded Redis."""
    storage = tmp_path_factory.mktemp("up") / "storage"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NST_")}
    env.update(NST_STORAGE_DIR=str(storage), NST_DEVICE="cpu")
    process = subprocess.Popen(
        [sys.executable, "-m", "nst_cli.main", "up", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    # Ready, and its worker up (the API is ready without one: jobs would wait for it).
    wait_until(
        lambda: answers_ok(f"{url}/readyz") and httpx.get(f"{url}/readyz").json()["workers"] >= 1,
        timeout_s=90,
        what="nst up and its worker to be ready",
    )
    yield url
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}/docs" in output


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


def csp_violations(page) -> list[str]:
    """A list that fills with the page's Content-Security-Policy refusals (the browser logs each one)."""
    refused: list[str] = []
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )
    return refused


def images(tmp_path: Path) -> tuple[Path, Path, Path]:
    content, style1, style2 = tmp_path / "photo.png", tmp_path / "style1.png", tmp_path / "style2.jpg"
    content.write_bytes(make_image(96, 72, seed=1))
    style1.write_bytes(make_image(80, 80, seed=2))
    style2.write_bytes(make_image(64, 96, seed=3, fmt="JPEG"))
    return content, style1, style2


def set_range(page, selector: str, value: int) -> None:
    page.eval_on_selector(selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", value)


def open_page(page, url: str) -> None:
    """The page with its form wired (main() awaits /api/config first: slow on a loaded machine)."""
    page.goto(url)
    page.wait_for_selector("body[data-ready]")


def one_style_job(page, tmp_path: Path, *, max_size: int, steps: int) -> None:
    """Fill the form: a photo, one style, the size and the steps."""
    content, style1, _ = images(tmp_path)
    page.set_input_files("#content-input", str(content))
    page.set_input_files("#style-input", str(style1))
    set_range(page, "#max_size", max_size)
    set_range(page, "#steps", steps)


def test_page_paints_and_downloads(stack_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    refused = csp_violations(page)
    open_page(page, stack_url)
    page.screenshot(path=ARTIFACTS / "1-empty.png", full_page=True)
    content, style1, style2 = images(tmp_path)
    page.set_input_files("#content-input", str(content))
    page.set_input_files("#style-input", [str(style1), str(style2)])
    assert page.locator("#style-thumbs img").count() == 2 and page.locator(".blend-weight").count() == 2
    set_range(page, "#max_size", 64)
    set_range(page, "#steps", 40)
    page.click("#submit")
    page.wait_for_function("() => parseFloat(document.getElementById('bar').style.width) > 0", timeout=60_000)
    page.wait_for_function(
        "() => (document.getElementById('live-view').getAttribute('src') || '').includes('preview')", timeout=60_000
    )
    page.screenshot(path=ARTIFACTS / "2-running.png", full_page=True)
    page.wait_for_selector("#download:not([hidden])", timeout=120_000)
    # How long it took, and where: the worker's device and the number format its network ran in.
    assert re.fullmatch(r"Done in \d+\.\d s on cpu \((fp32|bf16)\)\.", page.inner_text("#status-line"))
    page.screenshot(path=ARTIFACTS / "3-done.png", full_page=True)
    with page.expect_download() as download_info:
        page.click("#download")
    saved = tmp_path / "download.png"
    download_info.value.save_as(saved)
    picture = Image.open(saved)
    assert picture.format == "PNG" and picture.size == (64, 48)
    page.reload()
    page.wait_for_selector("#recent li .badge.succeeded")
    assert refused == []  # the page works under its security headers: thumbnails, previews, streams
    page.close()


def test_page_cancels_running_job(stack_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    open_page(page, stack_url)
    one_style_job(page, tmp_path, max_size=128, steps=1000)
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('status-line').textContent.includes('step')", timeout=60_000)
    page.click("#cancel")
    page.wait_for_function(
        "() => document.getElementById('status-line').textContent.includes('Canceled')", timeout=30_000
    )
    page.screenshot(path=ARTIFACTS / "4-canceled.png", full_page=True)
    page.close()


def test_page_finishes_running_job_with_its_picture(stack_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    open_page(page, stack_url)
    one_style_job(page, tmp_path, max_size=128, steps=1000)
    assert page.locator("#finish").is_hidden()
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('status-line').textContent.includes('step')", timeout=60_000)
    page.click("#finish")  # beside Cancel while the job runs
    page.wait_for_selector("#download:not([hidden])", timeout=60_000)
    status = page.inner_text("#status-line")
    assert re.search(r"Finished early: \d+ of 1000 steps\.", status), status
    assert page.locator("#finish").is_hidden() and page.locator("#cancel").is_hidden()
    assert "time left" not in page.inner_text("#numbers")  # the job has ended
    src = page.get_attribute("#live-view", "src")
    assert src is not None and "/result" in src
    page.screenshot(path=ARTIFACTS / "4b-finished.png", full_page=True)
    page.close()


def test_page_paints_a_clip_and_plays_it(stack_url, browser, tmp_path):
    from tests.clips import make_clip

    make_clip(tmp_path / "clip.mp4", frames=4, fps=4)
    _, style1, _ = images(tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    refused = csp_violations(page)
    open_page(page, stack_url)
    page.set_input_files("#content-input", str(tmp_path / "clip.mp4"))
    page.set_input_files("#style-input", str(style1))
    assert page.locator("#content-thumbs video").count() == 1
    set_range(page, "#max_size", 64)
    set_range(page, "#steps", 10)
    page.eval_on_selector("#frame_steps", "el => { el.value = '2'; }")  # under More settings
    page.click("#submit")
    page.wait_for_function(
        "() => /frame \\d+ of 4/.test(document.getElementById('status-line').textContent)", timeout=60_000
    )
    page.wait_for_selector("#download:not([hidden])", timeout=120_000)
    assert page.inner_text("#download") == "Download MP4"
    assert page.locator("#live-view").is_hidden() and page.locator("#result-video").is_visible()
    assert "/result" in (page.get_attribute("#result-video", "src") or "")
    page.screenshot(path=ARTIFACTS / "6-clip.png", full_page=True)
    assert refused == []
    page.close()


def test_page_shows_api_error(stack_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    open_page(page, stack_url)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a picture")
    _, style1, _ = images(tmp_path)
    page.set_input_files("#content-input", str(broken))
    page.set_input_files("#style-input", str(style1))
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "content" in page.inner_text("#error") and "not an image" in page.inner_text("#error")
    page.screenshot(path=ARTIFACTS / "5-error-phone.png", full_page=True)
    page.close()


def test_page_with_api_key_paints(browser, tmp_path, redis_server):
    from tests.conftest import start_stack

    stack = start_stack(
        tmp_path / "keyed", redis_server.url, engine="tests.engines:InstantEngine", api_keys="page-key-123"
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    refused = csp_violations(page)
    try:
        open_page(page, stack.url)
        page.wait_for_selector("#key-box", state="visible", timeout=30_000)  # once /api/config has answered
        one_style_job(page, tmp_path, max_size=64, steps=30)
        page.click("#submit")
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        assert "API key" in page.inner_text("#error")
        page.fill("#api-key", "page-key-123")
        page.click("#save-key")
        assert page.evaluate("() => localStorage.getItem('nst.apiKey')") == "page-key-123"
        page.click("#submit")
        page.wait_for_selector("#download:not([hidden])", timeout=60_000)
        href = page.get_attribute("#download", "href")
        assert "token=" in href and "page-key-123" not in href
        page.wait_for_function("() => document.getElementById('live-view').naturalWidth === 64", timeout=30_000)
        page.screenshot(path=ARTIFACTS / "6-api-key.png", full_page=True)
        assert refused == []
    finally:
        page.close()
        stack.stop()


def test_docs_page_renders_under_its_policy(stack_url, browser):
    """Swagger UI starts from an inline script that the page's policy names by hash; ReDoc renders too."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    refused = csp_violations(page)
    response = page.goto(f"{stack_url}/docs")
    assert "sha256-" in response.headers["content-security-policy"]
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    page.wait_for_selector("text=POST", timeout=30_000)  # the operations, from /openapi.json
    page.screenshot(path=ARTIFACTS / "7-docs.png", full_page=False)
    assert refused == []
    page.goto(f"{stack_url}/redoc")
    page.wait_for_selector("h1", timeout=30_000)
    assert "Neural style transfer" in page.inner_text("h1")
    # ReDoc's "powered by" logo comes from its CDN: refused, as everything from another origin is.
    assert all("https://cdn.redoc.ly/" in text and "img-src" in text for text in refused), refused
    page.close()


def test_page_offers_print_sizes_and_zooms_into_the_result(browser, tmp_path, redis_server):
    from tests.conftest import start_stack

    stack = start_stack(tmp_path / "print", redis_server.url, engine="tests.engines:InstantEngine", max_size_px=4096)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        open_page(page, stack.url)
        options = page.eval_on_selector_all("#print_size option", "els => els.map(e => e.value)")
        assert options == ["", "2048", "4096"]  # up to this service's cap; 8192 is over it
        one_style_job(page, tmp_path, max_size=64, steps=3)
        page.select_option("#print_size", "2048")
        assert page.is_disabled("#max_size")
        page.click("#submit")
        page.wait_for_selector("#download:not([hidden])", timeout=60_000)
        page.wait_for_function("() => document.getElementById('live-view').naturalWidth === 2048", timeout=30_000)
        page.click("#live-view")
        page.wait_for_selector("#zoom[open]")
        page.wait_for_function("() => document.getElementById('zoom-size').textContent.startsWith('2048×1536 px')")
        fit_width = page.evaluate("() => document.getElementById('zoom-img').getBoundingClientRect().width")
        assert fit_width < 1280
        page.click("[data-zoom='2']")
        assert page.evaluate("() => document.getElementById('zoom-img').getBoundingClientRect().width") == 4096
        assert "200%" in page.inner_text("#zoom-size")
        page.screenshot(path=ARTIFACTS / "8-print-zoom.png")
        page.click("#zoom-close")
        assert not page.is_visible("#zoom")
    finally:
        page.close()
        stack.stop()


def test_page_sends_a_mask_per_style_and_the_colour_mode(stack_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    refused = csp_violations(page)
    open_page(page, stack_url)
    content, style1, style2 = images(tmp_path)
    masks = []
    for i, columns in enumerate(((0, 32), (32, 64))):  # the right third of the 96 px photo: no style
        mask = Image.new("L", (96, 72), 0)
        mask.paste(255, (columns[0], 0, columns[1], 72))
        masks.append(tmp_path / f"mask{i}.png")
        mask.save(masks[-1])
    page.set_input_files("#content-input", str(content))
    page.set_input_files("#style-input", [str(style1), str(style2)])
    assert page.locator(".style-mask").count() == 2
    assert page.eval_on_selector_all("#color_mode option", "els => els.map(e => e.value)") == [
        "style",
        "luminance",
        "match",
    ]
    set_range(page, "#max_size", 96)
    set_range(page, "#steps", 6)
    page.locator(".style-mask").nth(0).set_input_files(str(masks[0]))
    page.click("#submit")  # one mask for two styles: refused here, before any upload
    assert page.inner_text("#error") == "Give a mask for every style, or none."
    page.locator(".style-mask").nth(1).set_input_files(str(masks[1]))
    assert page.locator(".mask-row img").count() == 4  # each style beside its mask
    page.select_option("#color_mode", "match")
    page.click("#submit")
    page.wait_for_selector("#download:not([hidden])", timeout=120_000)
    page.screenshot(path=ARTIFACTS / "9-masks.png", full_page=True)
    with page.expect_download() as download_info:
        page.click("#download")
    saved = tmp_path / "masked.png"
    download_info.value.save_as(saved)
    painted = np.asarray(Image.open(saved).convert("RGB"), dtype=float)
    photo = np.asarray(Image.open(content).convert("RGB"), dtype=float)
    assert np.abs(painted[:, 72:] - photo[:, 72:]).max() <= 1  # where neither mask reaches: the photo
    assert refused == []
    page.close()


def test_page_looks_row_sends_the_chosen_look(stack_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    refused = csp_violations(page)
    open_page(page, stack_url)
    page.wait_for_selector("#looks button.look[aria-checked=true]")
    looks = page.eval_on_selector_all("#looks button.look", "els => els.map(e => e.dataset.look)")
    assert looks == ["subtle", "balanced", "painterly", "texture"]
    assert page.get_attribute("#looks [aria-checked=true]", "data-look") == "balanced"
    page.wait_for_function(
        "() => [...document.querySelectorAll('#looks img')].every(i => i.naturalWidth > 0)", timeout=30_000
    )  # the thumbnails load
    page.click("#looks [data-look=painterly]")
    assert page.get_attribute("#looks [aria-checked=true]", "data-look") == "painterly"
    page.screenshot(path=ARTIFACTS / "8-looks.png", full_page=True)
    one_style_job(page, tmp_path, max_size=64, steps=2)
    # The browser does not expose a multipart body with files: the job as created says what was sent.
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/jobs")) as answer:
        page.click("#submit")
    params = answer.value.json()["params"]
    assert params["look"] == "painterly"
    # The slider was left at the look's value, so the look's own knobs came with it (not a slider's rounding).
    assert params["style_weight"] == LOOKS["painterly"]["style_weight"]
    assert params["style_layer_weights"] == list(LOOKS["painterly"]["style_layer_weights"])
    page.wait_for_selector("#download:not([hidden])", timeout=120_000)
    assert refused == []
    page.close()


def test_page_passes_axe_after_a_painting(stack_url, browser, tmp_path):
    """axe-core's rules (colour contrast among them: the figure captions were 4.48:1) on the page with a result."""
    from axe_playwright_python.sync_playwright import Axe

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    open_page(page, stack_url)
    one_style_job(page, tmp_path, max_size=64, steps=2)
    page.click("#submit")
    page.wait_for_selector("#download:not([hidden])", timeout=120_000)
    assert page.locator("figcaption").first.is_visible()
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()
    page.close()


def test_page_tries_strengths_then_paints_the_chosen_one(stack_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    refused = csp_violations(page)
    open_page(page, stack_url)
    one_style_job(page, tmp_path, max_size=288, steps=2)
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/sweeps")) as answer:
        page.click("#try-strengths")
    sweep = answer.value.json()
    assert answer.value.status == 202, sweep
    weights = sweep["axes"]["style_weight"]
    assert len(weights) == 3 and [float(w) for w in weights] == sorted(float(w) for w in weights)
    cell_job = page.request.get(stack_url + sweep["cells"][0]["links"]["job"]).json()
    assert cell_job["params"]["max_size"] == 256 and cell_job["params"]["steps"] == 2  # small, quick cells
    # The grid fills in as the cells finish.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#strength-grid img')].filter(i => i.naturalWidth > 0).length === 3",
        timeout=120_000,
    )
    page.screenshot(path=ARTIFACTS / "9-strengths.png", full_page=True)
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe().run(page)
    assert axe.violations_count == 0, axe.generate_report()  # the grid passes axe-core too
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/jobs")) as painted:
        page.click(f"#strength-grid button[data-weight='{weights[2]}']")
    params = painted.value.json()["params"]
    assert params["style_weight"] == float(weights[2]) and params["max_size"] == 288  # at full size
    page.wait_for_selector("#download:not([hidden])", timeout=120_000)
    assert refused == []
    page.close()
