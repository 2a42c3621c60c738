"""A real browser on the real app: `python app.py` on the shipped models, driven by Playwright.

Each test does what a person would: upload, press a button twice, switch the model, move the
sliders, send a bad file and then a good one, add files to a batch, open every tab. The app's log
says when a model runs, so the tests can tell a redraw from a model call. Headless Debian
Chromium (/usr/bin/chromium); screenshots go to artifacts/screenshots/. Under CI a missing browser
fails the run; elsewhere it skips.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_hostile_mr_dicom
from helpers import free_port, wait_for_http

from tumor_ai.core.explain import DEFAULT_OPACITY

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
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def app_log(tmp_path_factory):
    return tmp_path_factory.mktemp("app") / "app.log"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, app_log):
    port = free_port()
    log = app_log.open("w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio"))}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, process, log=app_log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(app_url):
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def swept_app(tmp_path_factory):
    """A second app whose sweep runs every 5 seconds and takes files older than 5 seconds: ``(url, log)``."""
    log_path = tmp_path_factory.mktemp("swept") / "app.log"
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "app.py", "--port", str(port), "--sweep-every", "5", "--sweep-age", "5"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, process, log=log_path)
        yield url, log_path
    finally:
        process.terminate()
        process.wait(timeout=30)


def _open(browser, app_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(app_url)
    page.get_by_text("tumor-ai").first.wait_for()
    return page


@pytest.fixture(scope="module")
def page(browser, app_url):
    return _open(browser, app_url)


def _tab(page, name: str) -> None:
    """Open a tab as a person would: from the tab bar, or from the "More tabs" menu a narrow window folds it into."""
    tab = page.get_by_role("tab", name=name).filter(visible=True)
    more = page.get_by_role("button", name="More tabs").filter(visible=True)
    tab.or_(more).first.wait_for()
    if tab.count():
        tab.first.click()
    else:
        more.click()
        page.locator(".overflow-menu").get_by_text(name, exact=True).click()


def _upload(page, elem_id: str, files) -> None:
    page.locator(f"#{elem_id} input[type=file]").first.set_input_files(files)


def _choose(page, button: str, path: Path) -> None:
    """Click an upload button and pick a file in the chooser that opens, as a person does."""
    with page.expect_file_chooser() as chooser:
        page.locator(button).click()
    chooser.value.set_files(str(path))


def _model_calls(app_log: Path) -> int:
    return app_log.read_text().count("model call:")


IDLE = (
    "sel => Array.from(document.querySelectorAll(sel + ' [data-testid=status-tracker]')).every(e => e.classList.contains('hide'))"
)


def _wait_for_log(app_log: Path, text: str, count: int, timeout: float = 60) -> None:
    """Until the app has logged ``text`` ``count`` times (a model call finished on the server)."""
    import time

    deadline = time.time() + timeout
    while app_log.read_text().count(text) < count:
        assert time.time() < deadline, f"the app logged '{text}' fewer than {count} times"
        time.sleep(0.2)


def _src(page, selector: str) -> str:
    return page.locator(f"{selector} img").first.get_attribute("src") or ""


def _wait_src_change(page, selector: str, before: str) -> str:
    page.wait_for_function(
        "([sel, old]) => { const img = document.querySelector(sel + ' img'); return img && img.src && img.src !== old; }",
        arg=[selector, before],
    )
    return _src(page, selector)


def _set_slider(page, elem_id: str, value: float) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_predict_the_same_upload_twice_with_each_model(page, example_paths):
    _tab(page, "Predict")
    _upload(page, "predict-image", str(example_paths["glioma"]))
    page.locator("#predict-reading").get_by_text("Slice loaded").wait_for()
    page.locator("#predict-button").click()
    page.locator("#predict-reading").get_by_text("The vgg16 model reads this slice").wait_for()
    page.locator("#predict-model").get_by_text("Custom CNN (cnn)").click()
    page.locator("#predict-reading").get_by_text("The cnn model reads this slice").wait_for()  # at once, no second press
    assert "not a medical device" in page.locator("#predict-reading").inner_text()
    page.screenshot(path=SHOTS / "predict.png", full_page=True)


def test_sliders_redraw_without_calling_a_model(page, app_log):
    before, calls = _src(page, "#predict-overlay"), _model_calls(app_log)
    _set_slider(page, "predict-opacity", 0.9)
    _wait_src_change(page, "#predict-overlay", before)
    assert _model_calls(app_log) == calls, "moving the opacity slider must not run a model"
    before = _src(page, "#predict-overlay")
    page.locator("#predict-evidence").get_by_text("Meningioma").click()
    page.locator("#predict-reading").get_by_text(re.compile("not the model's answer|no evidence for")).wait_for()
    _wait_src_change(page, "#predict-overlay", before)
    assert _model_calls(app_log) == calls + 1, "another class's Grad-CAM is one model call"
    page.screenshot(path=SHOTS / "predict_evidence.png", full_page=True)
    page.locator("#predict-evidence").get_by_text("Its answer").click()
    page.locator("#predict-reading").get_by_text("The evidence for that class came").wait_for()
    assert _model_calls(app_log) == calls + 1, "a class drawn before is not computed again"


def test_a_bad_file_then_a_good_one_leaves_no_stale_answer(page, app_log, tmp_path, example_paths):
    bad = tmp_path / "notes.png"
    bad.write_text("a text file renamed to .png")
    _upload(page, "predict-image", str(bad))
    page.locator("#predict-reading").get_by_text("it is a text file, not an image").wait_for()
    assert page.locator("#predict-overlay img").count() == 0, "the old overlay is cleared"
    page.wait_for_function("() => !document.querySelector('#predict-image img')")  # no broken-image strip
    page.wait_for_timeout(500)  # let the message finish sliding in
    assert "text file" in page.locator("#predict-reading").inner_text(), "the reason stays once the input is emptied"
    page.screenshot(path=SHOTS / "predict_error.png")
    page.locator("#predict-button").click()  # Predict on nothing: one pop-up, one badge, the reason still there
    page.locator(".toast-body").first.wait_for()
    page.wait_for_timeout(500)
    badges = page.locator("#predict-answer").get_by_text("Error", exact=True)
    assert badges.count() <= 1, "one error badge, not one per pane"
    assert "text file" in page.locator("#predict-reading").inner_text()
    page.screenshot(path=SHOTS / "predict_error_then_predict.png")
    _upload(page, "predict-image", str(example_paths["pituitary"]))
    page.locator("#predict-reading").get_by_text("Slice loaded").wait_for()
    page.locator("#predict-button").click()
    page.locator("#predict-reading").get_by_text("Pituitary").first.wait_for()
    assert "text file" not in page.locator("#predict-reading").inner_text()
    page.wait_for_function("() => document.querySelectorAll('.toast-body').length === 0")  # a good answer clears old errors
    assert "refused an upload: ImageError" in app_log.read_text() and "notes.png" not in app_log.read_text()


def test_dicom_opens_with_the_button_and_ct_is_refused_by_name(page):
    import pydicom

    files = Path(pydicom.__file__).parent / "data" / "test_files"
    _tab(page, "Predict")
    _choose(page, "#predict-image-other", files / "CT_small.dcm")
    page.locator("#predict-reading").get_by_text("modality is CT (computed tomography), not MR").wait_for()
    _choose(page, "#predict-image-other", files / "MR_small_jpeg_ls_lossless.dcm")
    page.locator("#predict-reading").get_by_text("DICOM window centre 600").wait_for()
    page.locator("#predict-image img").first.wait_for()  # the decoded slice is shown in the image box
    page.locator("#predict-button").click()
    page.locator("#predict-reading").get_by_text("reads this slice as").or_(
        page.get_by_text("does not look like a brain MRI")
    ).first.wait_for()
    assert "DICOM window centre 600" in page.locator("#predict-reading").inner_text() or "is_brain_mri" in page.content()
    page.screenshot(path=SHOTS / "predict_dicom.png", full_page=True)


def test_compare_says_what_matters_and_its_slider_is_live(page, app_log, example_paths):
    _tab(page, "Compare")
    _upload(page, "compare-image", str(example_paths["meningioma"]))
    page.locator("#compare-summary").get_by_text("Slice loaded").wait_for()
    page.locator("#compare-button").click()
    page.locator("#compare-summary").get_by_text("ms").first.wait_for()
    text = page.locator("#compare-summary").inner_text()
    assert ("Both models read" in text or "The models disagree" in text) and "cnn" in text and "vgg16" in text
    page.screenshot(path=SHOTS / "compare.png", full_page=True)  # at the default opacity, as a newcomer sees it
    before, calls = _src(page, "#compare-cnn"), _model_calls(app_log)
    _set_slider(page, "compare-opacity", 0.1)
    _wait_src_change(page, "#compare-cnn", before)
    assert _model_calls(app_log) == calls
    before = _src(page, "#compare-cnn")
    _set_slider(page, "compare-opacity", DEFAULT_OPACITY)  # and back, for the shots of the tests after it
    _wait_src_change(page, "#compare-cnn", before)


def test_compare_draws_both_maps_on_each_example(page, example_paths):
    """The four examples through Compare: both overlays drawn, the verdict and the plausible sets shown (look at the shots)."""
    _tab(page, "Compare")
    for label, path in example_paths.items():
        before = _src(page, "#compare-cnn")
        _upload(page, "compare-image", str(path))
        page.locator("#compare-summary").get_by_text("Slice loaded").wait_for()
        page.locator("#compare-button").click()
        page.locator("#compare-summary").get_by_text("ms").first.wait_for()
        _wait_src_change(page, "#compare-cnn", before)
        assert page.locator("#compare-vgg16 img").count() == 1
        assert "plausible at 95%" in page.locator("#compare-summary").inner_text()
        page.screenshot(path=SHOTS / f"compare_{label}.png", full_page=True)


def _paint(page, elem_id: str, share: float = 0.3) -> None:
    """Drag the editor's brush in a zig-zag over the middle of the slice, as a person paints over a region."""
    canvas = page.locator(f"#{elem_id} canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    left, top = box["x"] + box["width"] * (0.5 - share / 2), box["y"] + box["height"] * (0.5 - share / 2)
    page.mouse.move(left, top)
    page.mouse.down()
    for row in range(8):
        y = top + row * box["height"] * share / 7
        page.mouse.move(left + (box["width"] * share if row % 2 == 0 else 0), y, steps=6)
    page.mouse.up()


def test_hide_a_region_and_ask_again(page, app_log):
    """After Compare, paint over the middle of the slice, press the button twice: both models answer about the hidden slice."""
    page.locator("#compare-hide").get_by_text("Hide a region and ask again").click()
    page.locator("#compare-editor canvas").first.wait_for()
    page.locator("#compare-hide-button").click()  # nothing painted yet: told what to do
    page.get_by_text("Paint over the region to hide first").first.wait_for()
    _paint(page, "compare-editor")
    hides = app_log.read_text().count("hide a region")
    for clicks in (1, 2):
        page.locator("#compare-hide-button").click()
        _wait_for_log(app_log, "hide a region", hides + 2 * clicks)  # the server took this click, for both models
        page.wait_for_function(IDLE, arg="#compare-hide")  # and the page shows its answer
    answers = page.locator("#compare-hide-answers").inner_text()
    assert (
        re.search(r"You hid \d+\.\d% of the slice", answers)
        and "cnn: before → after (change)" in answers
        and "vgg16: before → after (change)" in answers
    )
    assert re.search(r"cnn (keeps|changes) its answer", answers) and re.search(r"vgg16 (keeps|changes) its answer", answers)
    assert page.locator("#compare-hidden img").count() == 1  # what the models saw, with the region filled
    page.locator("#compare-hide").screenshot(path=SHOTS / "compare_hide.png")
    page.locator("#compare-hide").get_by_text("Hide a region and ask again").click()  # folded again, as a person leaves it


def test_batch_runs_again_after_files_are_added(page, example_paths):
    _tab(page, "Batch")
    _upload(page, "batch-files", [str(example_paths["glioma"]), str(example_paths["notumor"])])
    page.locator("#batch-button").click()
    page.locator("#batch-summary").get_by_text("2 files · 0 refused").wait_for()
    _upload(page, "batch-files", [str(example_paths["meningioma"]), str(example_paths["pituitary"])])
    page.locator("#batch-files").get_by_text("pituitary", exact=True).wait_for()  # added to the two already there
    page.locator("#batch-button").click()
    page.locator("#batch-summary").get_by_text("4 files · 0 refused").wait_for()
    table = page.locator("#batch-table").inner_text()
    assert "glioma.jpg" in table and "pituitary.jpg" in table and "not found" not in table and "%" in table
    page.get_by_text("Grad-CAM overlays").first.wait_for()
    page.screenshot(path=SHOTS / "batch.png", full_page=True)


def _clear_batch(page) -> None:
    """Remove files an earlier test left in the Batch input, as the input's Clear button does."""
    clear = page.locator("#batch-files button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
        page.wait_for_function("() => !document.querySelector(\"#batch-files button[aria-label='Clear']\")")


STOPPED_BATCH = 160  # files in a batch that a test stops, abandons or runs past the sweep


def _distinct_slices(folder: Path, count: int, example_paths) -> list[str]:
    """``count`` different pictures (each example at another contrast, 0.8x to 1.2x, so none is folded as a
    duplicate and none is pushed so bright that the MRI check refuses it)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(exist_ok=True)
    sources = list(example_paths.values())
    paths = []
    for index in range(count):
        pixels = np.asarray(Image.open(sources[index % len(sources)]).convert("L"), dtype=np.float32)
        path = folder / f"slice_{index:02d}.png"
        Image.fromarray(np.clip(pixels * (0.8 + 0.4 * index / max(count - 1, 1)), 0, 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_stop_ends_a_batch_and_keeps_what_is_done(browser, app_url, app_log, tmp_path, example_paths):
    # A page of its own: the shared one carries the earlier tests' editor canvas, which a software-rendered headless
    # Chromium redraws on the CPU, and a click on Stop can then wait longer than the batch runs.
    page = _open(browser, app_url)
    _tab(page, "Batch")
    page.locator("#batch-stop").click()
    page.locator("#batch-status").get_by_text("No batch is running").wait_for()  # Stop with nothing to stop
    # Long enough that Stop lands mid-batch on a fast, quiet machine too (~5 files a second there: over 30 s).
    count = STOPPED_BATCH
    _upload(page, "batch-files", _distinct_slices(tmp_path / "many", count, example_paths))
    page.locator("#batch-files").get_by_text(f"slice_{count - 1}", exact=True).wait_for(state="attached")
    chunks = app_log.read_text().count("batch: ")
    page.locator("#batch-button").click()
    _wait_for_log(app_log, "batch: ", chunks + 1)
    page.locator("#batch-summary").get_by_text("files so far").wait_for()
    page.screenshot(path=SHOTS / "batch_running.png")
    page.locator("#batch-stop").click()
    page.locator("#batch-status").get_by_text("Stopped after").wait_for()
    assert "starts over from the first file" in page.locator("#batch-status").inner_text()
    page.wait_for_timeout(6000)  # longer than a group of 8 files takes
    assert "so far" not in page.locator("#batch-summary").inner_text(), "a stopped batch is not running"
    assert app_log.read_text().count(f"batch: {count}/{count}") == 0, "the batch did not run to its end"
    rows = page.locator("#batch-table").inner_text().count("slice_")
    assert 8 <= rows < count, f"{rows} rows: the groups done before Stop"
    page.locator("#batch-csv").get_by_text("tumor_ai_batch", exact=True).wait_for()
    page.screenshot(path=SHOTS / "batch_stopped.png", full_page=True)
    page.close()


def test_closing_the_page_ends_its_batch(browser, app_url, app_log, tmp_path, example_paths):
    page = _open(browser, app_url)
    _tab(page, "Batch")
    count = STOPPED_BATCH
    _upload(page, "batch-files", _distinct_slices(tmp_path / "abandoned", count, example_paths))
    page.locator("#batch-files").get_by_text(f"slice_{count - 1}", exact=True).wait_for(state="attached")
    start = len(app_log.read_text())  # this test's lines only: an earlier test's batch may have logged its end
    batches, chunks = app_log.read_text().count("model call: batch"), app_log.read_text().count("batch: ")
    page.locator("#batch-button").click()
    _wait_for_log(app_log, "batch: ", chunks + 1)
    page.close()  # the person leaves mid-batch
    page_gone = app_log.read_text().count("batch: ")
    import time

    time.sleep(10)  # room for three more groups of 8 if the batch went on
    text = app_log.read_text()
    assert text.count("model call: batch") == batches + 1
    assert text.count("batch: ") <= page_gone + 1, "at most the group in flight finishes; then the work ends"
    assert f"batch: {count}/{count}" not in text[start:]


def test_on_a_phone_the_answer_comes_into_view(browser, app_url, example_paths):
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.set_default_timeout(60_000)
    phone.goto(app_url)
    _upload(phone, "predict-image", str(example_paths["meningioma"]))
    phone.locator("#predict-reading").get_by_text("Slice loaded").wait_for()
    phone.locator("#predict-button").click()
    phone.locator("#predict-reading").get_by_text("reads this slice as").wait_for()
    phone.wait_for_function("() => Math.abs(document.getElementById('predict-answer').getBoundingClientRect().top) < 200")
    phone.screenshot(path=SHOTS / "phone_predict.png")
    _tab(phone, "Batch")
    _upload(phone, "batch-files", [str(path) for path in example_paths.values()])
    phone.locator("#batch-button").click()
    phone.locator("#batch-summary").get_by_text("4 files · 0 refused").wait_for()
    for name in ("cnn", "vgg16"):
        header = phone.locator("#batch-table th").filter(has_text=name).first
        box = header.bounding_box()
        assert box and box["x"] + box["width"] <= 390, f"the {name} column is on screen"
    phone.locator("#batch-table").scroll_into_view_if_needed()
    phone.screenshot(path=SHOTS / "phone_batch.png")
    phone.get_by_role("button", name="More tabs").click()  # a phone folds the last tabs into a menu
    phone.locator(".overflow-menu").get_by_text("About").click()
    phone.get_by_text("What the app keeps").wait_for()
    assert phone.get_by_text("never use it to make clinical decisions").count() == 1
    phone.screenshot(path=SHOTS / "phone_about.png")
    phone.close()


def test_after_the_sweep_examples_matrices_and_a_long_batch_all_still_work(browser, swept_app, tmp_path, example_paths):
    url, log = swept_app
    page = _open(browser, url)
    page.wait_for_timeout(11_000)  # past two sweeps of files older than 5 s
    page.locator("button.gallery-item").first.click()  # an example, served from the package, never swept
    page.locator("#predict-reading").get_by_text("Slice loaded").wait_for()
    page.locator("#predict-button").click()
    page.locator("#predict-reading").get_by_text("reads this slice as").wait_for()
    _tab(page, "About")
    page.get_by_text("Every 5 seconds the folder drops files older than 5 seconds").wait_for()
    matrix = page.locator("#about-tab img").first
    matrix.wait_for()
    assert matrix.evaluate("img => img.complete && img.naturalWidth > 0"), "the confusion matrix loads after the sweep"
    page.screenshot(path=SHOTS / "after_sweep_about.png", full_page=True)
    # A batch that runs longer than the sweep's age and period together: the sweep must not take inputs it has not
    # read yet. The Predict upload just before is the sweep's bait: free to go 5 s after it came, it is swept within
    # 10 s, while the batch runs (160 slices take about 16 s on the fastest CPU these tests ran on, AMX bfloat16).
    _tab(page, "Predict")
    _upload(page, "predict-image", str(example_paths["glioma"]))
    page.locator("#predict-reading").get_by_text("Slice loaded").wait_for()
    _tab(page, "Batch")
    last = STOPPED_BATCH - 1
    _upload(page, "batch-files", _distinct_slices(tmp_path / "many", STOPPED_BATCH, example_paths))
    page.locator("#batch-files").get_by_text(f"slice_{last}", exact=True).wait_for(state="attached")
    swept_before = log.read_text().count("file(s) older than")
    page.locator("#batch-button").click()
    page.locator("#batch-summary").get_by_text(f"{STOPPED_BATCH} files · 0 refused").wait_for(timeout=400_000)
    page.wait_for_function("() => !document.querySelector('#batch-summary').innerText.includes('so far')")  # the last yield
    assert log.read_text().count("file(s) older than") > swept_before, "the sweep ran and deleted files while the batch ran"
    table = page.locator("#batch-table").inner_text()  # "0 refused" above: every one of them was read
    assert "not found" not in table and "expired" not in table
    page.screenshot(path=SHOTS / "after_sweep_batch.png", full_page=True)
    page.close()


def test_two_people_send_the_same_slice_at_once(browser, app_url, example_paths):
    pages = [_open(browser, app_url) for _ in range(2)]
    for other in pages:
        _upload(other, "predict-image", str(example_paths["notumor"]))
        other.locator("#predict-reading").get_by_text("Slice loaded").wait_for()
    for other in pages:
        other.locator("#predict-button").click()
    said = []
    for other in pages:
        other.locator("#predict-reading").get_by_text("reads this slice as").wait_for()
        said.append(other.locator("#predict-reading").inner_text())
        other.close()
    assert said[0] == said[1], "the same slice, the same model: the same reading on both pages"


def test_about_tab(page):
    _tab(page, "About")
    page.get_by_text("What the app keeps").wait_for()
    page.get_by_text("Intended use").first.wait_for()
    maps = page.locator("#about-maps").inner_text()
    assert "Can you trust the overlays?" in maps and maps.count("tumour class in") == 2  # each model's erased-tumour figure
    assert page.locator("#about-tab").get_by_text("never use it to make clinical decisions").count() == 0, "the header has it"
    assert page.get_by_text("never use it to make clinical decisions").first.is_visible()
    assert page.locator("#about-tab").get_by_text("Model card: vgg16").is_visible()  # the default model's card comes first
    page.screenshot(path=SHOTS / "about.png", full_page=True)


HOSTILE_NAME = "<img src=x onerror=alert(1)><h1>result glioma 99%<h1>[link](https:evil.example) **b**"
MARKUP = "a, img, h1, form, input:not([type=file]), strong strong, em"  # Gradio's own file inputs are hidden


def test_names_and_header_fields_are_shown_as_text_never_as_markup(page, tmp_path, example_paths):
    import zipfile

    _tab(page, "Predict")
    bad = tmp_path / f"{HOSTILE_NAME}.png"
    bad.write_text("not an image")
    _upload(page, "predict-image", str(bad))
    reading = page.locator("#predict-reading")
    reading.get_by_text("it is a text file, not an image").wait_for()
    # Gradio drops <>:*"/\\|? from uploaded file names; what is left of the link must show as text.
    assert reading.locator(MARKUP).count() == 0 and "[link](httpsevil.example)" in reading.inner_text()
    dicom = tmp_path / "field.dcm"
    write_hostile_mr_dicom(dicom, '<form action="https:evil.example"><input name=q>')
    _choose(page, "#predict-image-other", dicom)
    reading.get_by_text("tumor-ai reads brain MR images only").wait_for()
    assert reading.locator(MARKUP).count() == 0 and '<form action="https:evil.example">' in reading.inner_text()

    _tab(page, "Batch")
    _clear_batch(page)
    archive = tmp_path / "hostile.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(example_paths["glioma"], f"{HOSTILE_NAME}.jpg")
        handle.writestr(f"=HYPERLINK(x) {HOSTILE_NAME}.png", b"broken")
    _upload(page, "batch-files", str(archive))
    page.locator("#batch-files").get_by_text("hostile.zip").wait_for()
    page.locator("#batch-button").click()
    page.locator("#batch-summary").get_by_text("· 1 refused").wait_for()
    table = page.locator("#batch-table")
    assert table.locator(MARKUP).count() == 0 and table.inner_text().count("<h1>result glioma 99%<h1>") >= 2, "names kept"
    assert page.locator("#batch-summary").locator(MARKUP).count() == 0
    captions = page.locator("#batch-gallery").inner_text()
    assert page.locator("#batch-gallery a, #batch-gallery h1, #batch-gallery form").count() == 0, captions
    page.screenshot(path=SHOTS / "hostile_names.png", full_page=True)


def _ask(page, text: str, boxes_before: int) -> None:
    """Type a question into the Assistant's box, send it, and wait for its answer's tool boxes."""
    page.locator("#assistant-box textarea").fill(text)
    page.locator("#assistant-box textarea").press("Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('#assistant-chat .message-row').length > n", arg=boxes_before, timeout=120_000
    )


def _rows(page) -> int:
    return page.locator("#assistant-chat .message-row").count()


def test_the_assistant_answers_from_its_tools(page, example_paths):
    """Drop a slice, ask three questions and a medical one: each answer shows the tool calls it came from."""
    _tab(page, "Assistant")
    page.locator("#assistant-box input[type=file]").first.set_input_files(str(example_paths["meningioma"]))
    page.locator("#assistant-box textarea").fill("")
    _ask(page, "Which model is surer?", 0)
    chat = page.locator("#assistant-chat")
    chat.get_by_text("compare_models").first.wait_for(timeout=120_000)
    chat.get_by_text("is the surer").first.wait_for()
    rows = _rows(page)
    _ask(page, "Show the evidence for pituitary", rows)
    chat.get_by_text("explain_class").first.wait_for(timeout=120_000)
    chat.get_by_text("a probability of").first.wait_for()
    chat.screenshot(path=SHOTS / "assistant.png")
    rows = _rows(page)
    _ask(page, "How accurate is the vgg16 on meningiomas?", rows)
    chat.get_by_text("recall").first.wait_for(timeout=120_000)
    rows = _rows(page)
    _ask(page, "What does Grad-CAM show?", rows)
    chat.get_by_text("pointing game").first.wait_for(timeout=60_000)
    rows = _rows(page)
    _ask(page, "Should I have surgery?", rows)
    chat.get_by_text("I can't give medical advice").first.wait_for(timeout=60_000)
    assert chat.locator("img").count() >= 4  # the slice, two comparison overlays, the pituitary evidence
    assert page.get_by_role("tab", name="About").is_visible() and not page.get_by_text("What the app keeps").is_visible()
    chat.screenshot(path=SHOTS / "assistant_refusal.png")


def _reply_after(page, text: str, first: str) -> str:
    """Ask ``text`` and return the reply's text once a message starting with ``first`` (a regex) is shown."""
    rows = _rows(page)
    _ask(page, text, rows)
    pattern = re.compile(first)
    chat = page.locator("#assistant-chat")
    bot = chat.locator('[data-testid="bot"]')  # each of the Assistant's messages: tool boxes, pictures, the reply
    bot.filter(has_text=pattern).last.wait_for(timeout=120_000)
    return bot.last.inner_text().strip()


def test_the_assistant_holds_a_six_turn_conversation(browser, app_url, example_paths):
    """Issue 39: a slice attached, a greeting and five questions; each reply's first sentence answers its question."""
    page = _open(browser, app_url)
    _tab(page, "Assistant")
    page.locator("#assistant-box input[type=file]").first.set_input_files(str(example_paths["meningioma"]))
    page.locator("#assistant-box textarea").fill("")
    turns = [
        ("hi", r"^Hello! I can see your slice"),
        ("is there a tumour?", r"^(Both models see a tumour|Neither model sees a tumour|The models disagree)"),
        ("why?", r"^The (cnn|vgg16) model reads \w+"),
        ("and the other model?", r"^The (cnn|vgg16) model (reads|gives)"),
        ("which model is better overall?", r"^(The (cnn|vgg16) model is better overall, by|Neither is clearly better overall)"),
        ("what is a meningioma?", r"^A meningioma is a tumour that grows from the meninges"),
    ]
    replies = []
    for number, (question, first) in enumerate(turns, 1):
        reply = _reply_after(page, question, first[1:])
        assert re.match(first, reply), (question, reply)
        assert reply.count("Not a diagnosis") <= 1 and "All 2" not in reply, reply
        replies.append(reply)
        page.locator("#assistant-chat").screenshot(path=SHOTS / f"assistant_turn{number}.png")
    why, other = (re.match(r"^The (\w+) model", reply).group(1) for reply in replies[2:4])
    assert why != other, replies[2:4]  # "and the other model?" moved to the model "why?" did not use
    assert "Source:" in replies[5] and "I can't give medical advice" not in "".join(replies)
    page.screenshot(path=SHOTS / "assistant_conversation.png", full_page=True)
    page.close()


# Issue 40: the maps say how strong they are, the page says why a map ends in a straight edge, the layout holds on a
# phone and in a 1400x900 window, and About opens with the models compared. Each test opens its own page.

# The words of ``selector``'s text rendered on more than one line: a word broken inside itself ("Gliom a"). A break at
# a hyphen or a dash ("macro-", "F1") is where a line may end, so the parts between them are checked.
BROKEN_WORDS = """sel => {
  const broken = [];
  document.querySelectorAll(sel).forEach(cell => {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const part of node.textContent.matchAll(/[^\\s\\-–—]+/g)) {
        const range = document.createRange();
        range.setStart(node, part.index);
        range.setEnd(node, part.index + part[0].length);
        const lines = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(part[0]);
      }
    }
  });
  return broken;
}"""


def _box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def _compare(page, path: Path) -> None:
    _tab(page, "Compare")
    _upload(page, "compare-image", str(path))
    page.locator("#compare-summary").get_by_text("Slice loaded").wait_for()
    page.locator("#compare-button").click()
    page.locator("#compare-summary").get_by_text("ms").first.wait_for()
    for name in ("cnn", "vgg16"):
        page.locator(f"#compare-{name} img").first.wait_for()
    page.wait_for_function(IDLE, arg="#compare-answer")


def test_the_colour_bar_says_how_strong_the_map_on_screen_is(browser, app_url, example_paths):
    """Predict's colour bar marks where the drawn map peaks, and its words say the same: full strength for the answer,
    as faint as its probability for another class (``drawn_strength``); Compare has its own bar under its maps."""
    page = _open(browser, app_url)
    _upload(page, "predict-image", str(example_paths["glioma"]))
    page.locator("#predict-reading").get_by_text("Slice loaded").wait_for()
    page.locator("#predict-button").click()
    legend = page.locator("#predict-legend")
    legend.get_by_text("Drawn at full strength: red marks the strongest evidence for Glioma").wait_for()
    assert float(legend.locator(".evidence-legend").get_attribute("data-peak")) > 0.98  # the answer's map, at full strength
    assert legend.get_by_text("weak", exact=True).is_visible() and legend.get_by_text("strong evidence").is_visible()
    assert _box(page, "#predict-legend")["y"] >= _box(page, "#predict-overlay")["y"] + _box(page, "#predict-overlay")["height"]
    page.locator("#predict-evidence").get_by_text("Meningioma").click()
    legend.get_by_text("Meningioma is not the model's answer").wait_for()
    words = legend.locator(".evidence-words").inner_text()
    probability = float(re.search(r"(?:only |likely \()(\d+\.?\d*)%", words)[1]) / 100
    peak = float(legend.locator(".evidence-legend").get_attribute("data-peak"))
    assert abs(peak - probability) < 0.006, (words, peak)  # the map is drawn as strong as the class is likely
    mark = float(re.search(r"left: ([\d.]+)%", legend.locator(".evidence-peak").get_attribute("style"))[1])
    assert abs(mark / 100 - peak) < 0.001 and ("never red" in words or "not red" in words)
    if probability < 0.10:
        assert words.startswith("Weak evidence") and "weak evidence" in page.locator("#predict-reading").inner_text()
    page.locator("#predict-answer").screenshot(path=SHOTS / "predict_weak_evidence.png")
    _compare(page, example_paths["meningioma"])
    bar = _box(page, "#compare-legend .evidence-bar")
    assert bar and bar["y"] > _box(page, "#compare-cnn")["y"] + _box(page, "#compare-cnn")["height"] - 1, "under the maps"
    assert "drawn at full strength" in page.locator("#compare-legend").inner_text()
    page.close()


def test_the_page_says_why_a_map_ends_in_a_straight_edge(browser, app_url, example_paths):
    """Under the maps, the caveat names the model that reads only the square around the head (its metadata's crop)."""
    page = _open(browser, app_url)
    for caveat in ("#predict-caveat", "#compare-caveat"):
        if caveat == "#compare-caveat":
            _tab(page, "Compare")
        text = page.locator(caveat).inner_text()
        assert "The cnn model reads only the square around the head" in text and "hard straight edge" in text, text
        assert "not a finding" in text and "vgg16 model reads only" not in text
    page.close()


def test_compare_on_a_phone_shows_both_maps_together_and_whole_words(browser, app_url, example_paths):
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.set_default_timeout(60_000)
    phone.goto(app_url)
    _compare(phone, example_paths["meningioma"])
    phone.wait_for_function("() => Math.abs(document.getElementById('compare-answer').getBoundingClientRect().top) < 200")
    cnn, vgg16 = _box(phone, "#compare-cnn"), _box(phone, "#compare-vgg16")
    assert abs(cnn["y"] - vgg16["y"]) < 2, "the two maps side by side, not a screen apart"
    assert cnn["x"] + cnn["width"] <= vgg16["x"] and vgg16["x"] + vgg16["width"] <= 390
    assert cnn["y"] >= 0 and cnn["y"] + cnn["height"] <= 844, "both maps on the screen with the answer"
    assert phone.evaluate(BROKEN_WORDS, "#compare-summary th, #compare-summary td") == []
    for name in ("cnn", "vgg16"):
        label, buttons = _box(phone, f"#compare-{name} [data-testid=block-label]"), _box(phone, f"#compare-{name} button")
        assert label["x"] + label["width"] <= buttons["x"] + 1, "the map's label beside its buttons, not under them"
        icon = _box(phone, f"#compare-{name} [data-testid=block-label] svg")
        assert icon["height"] <= 24 and icon["width"] <= 24, ("the label's icon stays small, never over the map", icon)
    phone.screenshot(path=SHOTS / "phone_compare.png")
    phone.close()


def test_compare_in_a_1400x900_window_shows_both_maps_without_scrolling(browser, app_url, example_paths):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(app_url)
    _compare(page, example_paths["glioma"])
    assert page.evaluate("window.scrollY") == 0
    for name in ("cnn", "vgg16"):
        box = _box(page, f"#compare-{name}")
        assert box["y"] >= 0 and box["y"] + box["height"] <= 900, f"the {name} map is above the fold"
    assert _box(page, "#compare-legend .evidence-bar")["y"] < 900
    page.screenshot(path=SHOTS / "compare_1400x900.png")
    page.close()


def _labelled_zip(path: Path, per_class: int, example_paths) -> Path:
    """A .zip with class folders: ``per_class`` different pictures of each example (each at another contrast)."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    with zipfile.ZipFile(path, "w") as archive:
        for label, source in example_paths.items():
            pixels = np.asarray(Image.open(source).convert("L"), dtype=np.float32)
            for index in range(per_class):
                data = io.BytesIO()
                Image.fromarray(np.clip(pixels * (0.8 + 0.03 * index), 0, 255).astype(np.uint8)).save(data, "PNG")
                archive.writestr(f"{label}/slice_{index}.png", data.getvalue())
    return path


# While a batch runs: the progress text's box and the summary's text box, once both are on the page (one frame).
PROGRESS_AND_SUMMARY = """() => {
  const tracker = Array.from(document.querySelectorAll('#batch-status [data-testid=status-tracker], '
    + '#batch-summary [data-testid=status-tracker]')).find(e => !e.classList.contains('hide') && e.innerText.includes('%'));
  const summary = document.querySelector('#batch-summary .prose');
  if (!tracker || !summary || !summary.innerText.includes('so far')) return null;
  const words = Array.from(tracker.querySelectorAll('.progress-level-inner, .progress-text')).map(e => e.getBoundingClientRect());
  const text = summary.getBoundingClientRect();
  const overlaps = words.filter(r => r.width > 0 && r.left < text.right && text.left < r.right && r.top < text.bottom
    && text.top < r.bottom);
  return {words: words.length, overlaps: overlaps.length};
}"""


def test_a_labelled_batch_keeps_words_whole_and_its_progress_off_the_summary(browser, app_url, tmp_path, example_paths):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(app_url)
    _tab(page, "Batch")
    _upload(page, "batch-files", str(_labelled_zip(tmp_path / "labelled.zip", 6, example_paths)))
    page.locator("#batch-files").get_by_text("labelled.zip").wait_for()
    page.locator("#batch-button").click()
    shown = page.wait_for_function(PROGRESS_AND_SUMMARY, polling="raf").json_value()
    assert shown["words"] and shown["overlaps"] == 0, "the progress is not written over the summary"
    page.locator("#batch-summary").get_by_text("24 files · 0 refused").wait_for()
    page.locator("#batch-summary").get_by_text("Labelled by folder: 24 of 24 files.").wait_for()
    headers = page.locator("#batch-summary th")
    assert "Meningioma" in headers.all_inner_texts() and "Glioma" in headers.all_inner_texts()
    assert page.evaluate(BROKEN_WORDS, "#batch-summary th, #batch-summary td") == []
    page.locator("#batch-summary").screenshot(path=SHOTS / "batch_labelled.png")
    page.close()


def test_about_opens_with_the_models_compared(browser, app_url):
    """About's first block: which model is better at what (from each tumor_ai.json), the table, then the confusion
    matrices side by side; the reliability diagrams where a model folder has one, else a sentence saying why not."""
    from tumor_ai.core.wording import reliability_missing, which_is_better
    from tumor_ai.model.metadata import ModelMetadata

    metadata = {name: ModelMetadata.read(ROOT / "models" / name / "tumor_ai.json") for name in ("cnn", "vgg16")}
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(app_url)
    _tab(page, "About")
    comparison = page.locator("#about-comparison")
    comparison.get_by_text("Which model is better, at what?").wait_for()
    text = comparison.inner_text()
    assert which_is_better(metadata).replace("**", "") in text.replace("\n", " ")
    for meta in metadata.values():
        assert f"{meta.metrics.validation.accuracy:.1%}" in text and f"{meta.localisation.pointing_game.value:.0%}" in text
    assert all(row in text for row in ("Macro-F1", "Calibration error", "pointing game", "tumour erased"))
    first = page.locator("#about-tab .block").first
    assert first.get_attribute("id") == "about-comparison", "About opens with the comparison"
    assert _box(page, "#about-comparison")["y"] < _box(page, "#about-maps")["y"]
    matrices = page.locator("#about-matrices img")
    matrices.first.wait_for()
    left, right = (matrices.nth(index).bounding_box() for index in range(2))
    assert abs(left["y"] - right["y"]) < 2 and left["x"] + left["width"] <= right["x"], "side by side"
    drawn = [name for name in metadata if (ROOT / "models" / name / "reliability_diagram.png").is_file()]
    missing = page.locator("[id^='about-no-reliability']").all_inner_texts()
    if not drawn:
        assert missing == [reliability_missing(list(metadata)).replace("`", "")]
    else:  # each diagram under its model's confusion matrix; a model without one says why in its place
        assert missing == [reliability_missing([name]).replace("`", "") for name in metadata if name not in drawn]
        diagrams = page.locator("#about-reliability img")
        diagrams.first.wait_for()
        assert diagrams.count() == len(drawn)
        for index, name in enumerate(metadata):  # the diagrams come in the models' order, each under its matrix
            if name in drawn:
                box = diagrams.nth(drawn.index(name)).bounding_box()
                matrix = matrices.nth(index).bounding_box()
                assert box["y"] > matrix["y"] + matrix["height"] - 2 and abs(box["x"] - matrix["x"]) < 40, name
    assert page.evaluate(BROKEN_WORDS, "#about-comparison th, #about-comparison td") == []
    page.screenshot(path=SHOTS / "about_comparison.png")
    if drawn:
        page.locator("#about-reliability").scroll_into_view_if_needed()
        page.screenshot(path=SHOTS / "about_reliability.png")
    page.close()
