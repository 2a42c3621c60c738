"""A real browser on the real app: `python app.py` on the shipped models, driven by Playwright.

Headless Debian Chromium (/usr/bin/chromium). Screenshots of each tab go to
artifacts/screenshots/. Under CI a missing browser fails the run; elsewhere it skips.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("TUMOR_AI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"app did not answer at {url}")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = _free_port()
    log = (tmp_path_factory.mktemp("app") / "app.log").open("w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio"))}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def page(app_url):
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,  # Playwright gives each launch a new, empty profile
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(app_url)
        page.get_by_text("tumor-ai").first.wait_for()
        yield page
        browser.close()


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _upload(page, elem_id: str, files) -> None:
    """Put files in a gr.File; one that already holds a file is cleared first, as a person would."""
    box = page.locator(f"#{elem_id}")
    if box.locator("input[type=file]").count() == 0:
        box.get_by_role("button", name="Clear").click()
    box.locator("input[type=file]").set_input_files(files)


def test_predict_tab(page, example_paths):
    _tab(page, "Predict")
    _upload(page, "predict-file", str(example_paths["glioma"]))
    page.locator("#predict-button").click()
    page.locator("#predict-reading").get_by_text("reads this slice as").wait_for()
    assert "not a medical device" in page.locator("#predict-reading").inner_text()
    page.screenshot(path=SHOTS / "predict.png", full_page=True)


def test_compare_tab(page, example_paths):
    _tab(page, "Compare")
    _upload(page, "compare-file", str(example_paths["meningioma"]))
    page.locator("#compare-button").click()
    page.locator("#compare-summary").get_by_text("The models").wait_for()
    text = page.locator("#compare-summary").inner_text()
    assert "cnn" in text and "vgg16" in text and "ms" in text
    page.screenshot(path=SHOTS / "compare.png", full_page=True)


def test_batch_tab(page, example_paths):
    _tab(page, "Batch")
    _upload(page, "batch-files", [str(path) for path in example_paths.values()])
    page.locator("#batch-button").click()
    page.locator("#batch-table").get_by_text("pituitary.jpg").wait_for()
    page.get_by_text("Grad-CAM overlays").first.wait_for()
    page.screenshot(path=SHOTS / "batch.png", full_page=True)


def test_about_tab(page):
    _tab(page, "About")
    page.get_by_text("Nothing is kept").wait_for()
    page.get_by_text("Intended use").first.wait_for()
    page.screenshot(path=SHOTS / "about.png", full_page=True)


def test_predict_refuses_a_non_image_and_keeps_serving(page, tmp_path, example_paths):
    bad = tmp_path / "notes.jpg"
    bad.write_text("a text file renamed to .jpg")
    _tab(page, "Predict")
    _upload(page, "predict-file", str(bad))
    page.locator("#predict-button").click()
    page.get_by_text("it is a text file, not an image").first.wait_for()
    page.wait_for_timeout(500)  # let the message finish sliding in
    page.screenshot(path=SHOTS / "predict_error.png")
    _upload(page, "predict-file", str(example_paths["pituitary"]))
    page.locator("#predict-button").click()
    page.locator("#predict-reading").get_by_text("Pituitary").first.wait_for()
