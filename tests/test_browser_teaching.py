"""The teaching features in a real browser on the real app (issue 40), and the lesson plan walked step by step.

`python app.py` on the shipped models, driven by Playwright in Debian's Chromium, as ``test_browser.py`` does (its
fixtures and helpers are shared). Nothing here knows what the models answer: the true classes and the hard cases'
reasons come from ``tumor_ai/examples/examples.json``; whether a model is right is read off the page. Every wait is
on page state (a text, a picture's address, a checkbox), never on a clock. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import test_browser
from conftest import EXAMPLES
from PIL import Image
from test_browser import (
    BROKEN_WORDS,
    IDLE,
    SHOTS,
    _clear_batch,
    _model_calls,
    _open,
    _paint,
    _src,
    _tab,
    _upload,
    _wait_src_change,
)

from tumor_ai.core.wording import HARD_CASE_TITLES, NO_OUTLINE, OUTLINE_SHOWN
from tumor_ai.model.labels import display_name

pytestmark = [pytest.mark.browser, pytest.mark.slow]
app_log, app_url, browser = test_browser.app_log, test_browser.app_url, test_browser.browser  # its app, for this module
ENTRIES = json.loads((EXAMPLES / "examples.json").read_text())["examples"]


def _truth(case: str | None = None, label: str | None = None) -> str:
    """The display name of an example's true class, as the manifest gives it."""
    entry = next(e for e in ENTRIES if e.get("case") == case and (label is None or e["label"] == label))
    return display_name(entry["label"])


@pytest.fixture(scope="module")
def page(browser, app_url):
    return _open(browser, app_url)


def _input_src(page, prefix: str) -> str:
    return page.evaluate("sel => document.querySelector(sel + ' img')?.src || ''", f"#{prefix}-image")


def _load(page, prefix: str, button) -> None:
    """Click an example into a tab's input and wait until the input shows it and the tab is idle again."""
    before = _input_src(page, prefix)
    button.click()
    page.wait_for_function(
        "([sel, old]) => { const img = document.querySelector(sel + ' img'); return img && img.src && img.src !== old; }",
        arg=[f"#{prefix}-image", before],
    )
    page.wait_for_function(IDLE, arg=f"#{prefix}-answer")


def _hard(page, prefix: str, case: str) -> None:
    """A hard case from a tab's gallery, where each is titled by why it was chosen (never by its class)."""
    _load(page, prefix, page.locator(f"#{prefix}-hard").get_by_text(HARD_CASE_TITLES[case]))


def _example(page, prefix: str, index: int) -> None:
    """One of a tab's one-per-class examples (0 glioma, 1 meningioma, 2 no tumour, 3 pituitary)."""
    _load(page, prefix, page.locator(f"#{prefix}-examples button.gallery-item").nth(index))


def _white(page, selector: str) -> int:
    """Near-white pixels in a drawn map on the page (the outline's line; the map's colours have none)."""
    picture = page.request.get(_src(page, selector)).body()
    return int((np.asarray(Image.open(io.BytesIO(picture)).convert("RGB")).min(axis=-1) > 200).sum())


def _checked(page, elem_id: str, value: bool) -> None:
    """Wait until a checkbox shows ``value`` (a switch the other tab moved)."""
    page.wait_for_function("([id, value]) => document.querySelector('#' + id + ' input').checked === value", arg=[elem_id, value])


IN_VIEW = "id => Math.abs(document.getElementById(id).getBoundingClientRect().top) < 200"
ON_SCREEN = "id => { const top = document.getElementById(id).getBoundingClientRect().top; return top >= 0 && top < innerHeight; }"


def _selected_tab(page, name: str) -> None:
    page.wait_for_function(
        "name => [...document.querySelectorAll('button[role=tab]')].some(b => b.getAttribute('aria-selected') === 'true'"
        " && b.innerText.trim() === name)",
        arg=name,
    )


def test_guess_first_holds_the_true_class_until_the_model_answers(page):
    _tab(page, "Predict")
    teaching = page.locator("#predict-teaching")
    assert page.locator("#predict-guess input").is_checked(), "guessing first is on when the page opens"
    _hard(page, "predict", "disagree")
    teaching.get_by_text("Guess first").wait_for()
    truth = _truth("disagree")
    assert truth not in teaching.inner_text() and "%" not in teaching.inner_text()
    page.screenshot(path=SHOTS / "teaching_guess.png", full_page=True)
    page.locator("#predict-button").click()
    teaching.get_by_text(f"True class: {truth}").wait_for()
    assert re.search(r"vgg16 reads [\w ]+ \(\d+%\): (right|wrong)", teaching.inner_text()), teaching.inner_text()
    said = page.locator("#predict-reading").inner_text()
    assert ("right" in teaching.inner_text()) == (f"reads this slice as {truth}" in said)
    page.screenshot(path=SHOTS / "teaching_revealed.png", full_page=True)
    page.locator("#predict-model").get_by_text("Custom CNN (cnn)").click()  # the new model's answer is judged
    teaching.get_by_text("cnn reads").wait_for()
    # Off in Predict is off in Compare too; there an example's class shows as soon as it is loaded.
    page.locator("#predict-guess input").uncheck()
    _tab(page, "Compare")
    _checked(page, "compare-guess", False)
    _hard(page, "compare", "both_wrong")
    page.locator("#compare-teaching").get_by_text(f"True class: {_truth('both_wrong')}").wait_for()
    assert "reads" not in page.locator("#compare-teaching").inner_text(), "no answer yet, so none judged"
    page.locator("#compare-guess input").check()
    _checked(page, "predict-guess", True)
    page.locator("#compare-teaching").get_by_text("Guess first").wait_for()


def test_the_outline_is_drawn_over_both_maps_without_a_model_call(page, app_log, tmp_path):
    _tab(page, "Predict")
    _example(page, "predict", 1)  # the meningioma
    page.locator("#predict-button").click()
    page.locator("#predict-reading").get_by_text("reads this slice as").wait_for()
    page.wait_for_function(IDLE, arg="#predict-answer")
    before, heat, calls = _src(page, "#predict-overlay"), _src(page, "#predict-heatmap"), _model_calls(app_log)
    plain = _white(page, "#predict-overlay")
    page.locator("#predict-outline input").check()
    _wait_src_change(page, "#predict-overlay", before)
    _wait_src_change(page, "#predict-heatmap", heat)
    page.locator("#predict-teaching").get_by_text(OUTLINE_SHOWN[:40]).wait_for()
    assert _white(page, "#predict-overlay") > plain + 200 and _white(page, "#predict-heatmap") > 200
    assert _model_calls(app_log) == calls, "drawing the outline runs no model"
    page.locator("#predict-answer").screenshot(path=SHOTS / "teaching_outline_predict.png")
    _tab(page, "Compare")
    _checked(page, "compare-outline", True)  # ticked in Predict, ticked here
    _example(page, "compare", 1)
    page.locator("#compare-button").click()
    page.locator("#compare-summary").get_by_text("ms").first.wait_for()
    page.wait_for_function(IDLE, arg="#compare-answer")
    assert all(_white(page, f"#compare-{name}") > plain + 200 for name in ("cnn", "vgg16")), "both models' maps"
    page.screenshot(path=SHOTS / "teaching_outline_compare.png", full_page=True)
    before, calls = _src(page, "#compare-cnn"), _model_calls(app_log)
    page.locator("#compare-outline input").uncheck()
    _wait_src_change(page, "#compare-cnn", before)
    assert _white(page, "#compare-cnn") < plain + 200 and _model_calls(app_log) == calls
    # A slice that is not a labelled example (the meningioma, a shade darker) has no outline, and says so.
    page.locator("#compare-outline input").check()
    darker = tmp_path / "darker.png"
    pixels = np.asarray(Image.open(EXAMPLES / "meningioma.jpg").convert("L"), dtype=np.float32) * 0.9
    Image.fromarray(pixels.astype(np.uint8)).save(darker)
    _upload(page, "compare-image", str(darker))
    page.locator("#compare-teaching").get_by_text(NO_OUTLINE[:40]).wait_for()
    page.locator("#compare-outline input").uncheck()
    _checked(page, "predict-outline", False)


def _view(page) -> tuple[int, int]:
    """The filter's line: (rows shown, rows in all)."""
    shown, total = re.match(r"(\d+) of (\d+) rows", page.locator("#batch-view").inner_text()).groups()
    return int(shown), int(total)


def _rows_shown(page) -> list[str]:
    cells = page.locator("#batch-table [data-testid^='cell-'][data-col='0']")
    return [cells.nth(index).inner_text() for index in range(cells.count())]


def _filter(page, name: str, line: str) -> None:
    page.locator("#batch-filter").get_by_label(name, exact=True).check()
    page.locator("#batch-view").get_by_text(line).wait_for()


GALLERY_SHOWS = "n => document.querySelectorAll('#batch-gallery img').length === n"
# Each batch table column's header and first cell, as [left, width]: Gradio sizes them apart (a header table above a
# virtual list of rows), so a width set on one alone would misalign them.
COLUMN_BOXES = """() => [...document.querySelectorAll('#batch-table th')].map((th, col) => {
  const cell = document.querySelector(`#batch-table [data-testid^='cell-'][data-col='${col}']`);
  const [h, c] = [th.getBoundingClientRect(), cell.getBoundingClientRect()];
  return [th.innerText.trim(), Math.round(h.left), Math.round(h.width), Math.round(c.left), Math.round(c.width)];
})"""


def _labelled_batch(page) -> None:
    """The labelled example set through the Batch tab, to its end (its filter usable again)."""
    _tab(page, "Batch")
    _clear_batch(page)
    page.locator("#batch-labelled button.gallery-item").first.click()
    page.locator("#batch-files").get_by_text("labelled", exact=True).wait_for()
    page.locator("#batch-button").click()
    page.locator("#batch-summary").get_by_text("Labelled by folder").wait_for()
    page.wait_for_function("() => !document.querySelector('#batch-filter input').disabled")


def test_a_labelled_batch_shows_its_errors_and_disagreements_and_a_row_opens_in_compare(page):
    _labelled_batch(page)
    _filter(page, "Errors", "a model reads as another class")
    errors, total = _view(page)
    assert total == len(ENTRIES)
    page.wait_for_function("n => document.querySelectorAll(\"#batch-table [data-col='0']\").length === n", arg=errors)
    page.wait_for_function(GALLERY_SHOWS, arg=2 * errors)  # the gallery follows: both models' overlays of those rows
    table = page.locator("#batch-table").inner_text()
    assert table.count("✗") >= errors, "each error row marks the wrong answer"
    page.screenshot(path=SHOTS / "teaching_batch_errors.png", full_page=True)
    _filter(page, "Disagreements", "the models read differently")
    disagreements, _ = _view(page)
    page.wait_for_function("n => document.querySelectorAll(\"#batch-table [data-col='0']\").length === n", arg=disagreements)
    page.wait_for_function(GALLERY_SHOWS, arg=2 * disagreements)
    assert all(row.strip() for row in _rows_shown(page))
    if not errors:  # models retrained into getting every example right: open a row of all of them
        _filter(page, "All", "every file")
    else:
        _filter(page, "Errors", "a model reads as another class")
    opened = _rows_shown(page)[0]
    truth = display_name(opened.replace("\n", "").split("/")[1])
    page.locator("#batch-table [data-testid='cell-0-1']").click()
    _selected_tab(page, "Compare")
    page.locator("#compare-teaching").get_by_text(f"True class: {truth}").wait_for()
    page.locator("#compare-summary").get_by_text("ms").first.wait_for()
    text = page.locator("#compare-teaching").inner_text()
    assert "cnn reads" in text and "vgg16 reads" in text
    page.locator("#compare-image img").first.wait_for()
    page.wait_for_function(IN_VIEW, arg="compare-answer")  # the table was far down the page: the answer comes up
    page.wait_for_function(IDLE, arg="#compare-answer")
    page.screenshot(path=SHOTS / "teaching_batch_row_in_compare.png", full_page=True)
    page.locator("#compare-button").click()  # the opened slice is the tab's own: Compare again reads it, no upload needed
    page.wait_for_function(IDLE, arg="#compare-answer")
    assert "Upload an MRI slice first" not in page.locator("body").inner_text()


def test_the_lesson_plan_step_by_step(browser, app_url, app_log):
    """docs/lesson-plan.md, each step as the teacher does it, in a 1400x900 window."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(app_url)
    page.get_by_text("tumor-ai").first.wait_for()
    teaching = page.locator("#predict-teaching")
    # 1. Guess first (Predict): the meningioma example, no class shown until Predict.
    assert page.locator("#predict-guess input").is_checked()
    _example(page, "predict", 1)
    teaching.get_by_text("Guess first").wait_for()
    assert "Meningioma" not in teaching.inner_text()
    page.locator("#predict-button").click()
    teaching.get_by_text("True class: Meningioma").wait_for()
    page.wait_for_function(ON_SCREEN, arg="predict-teaching")  # revealed where the class sees it, not above the window
    page.screenshot(path=SHOTS / "lesson_1_guess_first.png")
    # 2. Where did it look: the outline over both maps, then the faint map of an unlikely class.
    overlay = _src(page, "#predict-overlay")
    page.locator("#predict-outline input").check()
    overlay = _wait_src_change(page, "#predict-overlay", overlay)
    teaching.get_by_text(OUTLINE_SHOWN[:40]).wait_for()
    page.locator("#predict-evidence").get_by_text("No tumour").click()
    page.locator("#predict-reading").get_by_text(re.compile("not the model's answer|no evidence for|weak evidence")).wait_for()
    _wait_src_change(page, "#predict-overlay", overlay)
    page.locator("#predict-answer").screenshot(path=SHOTS / "lesson_2_outline.png")
    page.locator("#predict-evidence").get_by_text("Its answer").click()
    # 3. Two models disagree (Compare): guess, Compare, the true class and each answer judged; then the unsure case.
    _tab(page, "Compare")
    compare = page.locator("#compare-teaching")
    for case in ("disagree", "unsure"):
        _hard(page, "compare", case)
        compare.get_by_text("Guess first").wait_for()
        page.locator("#compare-button").click()
        compare.get_by_text(f"True class: {_truth(case)}").wait_for()
        assert "cnn reads" in compare.inner_text() and "vgg16 reads" in compare.inner_text()
        assert "plausible at 95%" in page.locator("#compare-summary").inner_text()
        page.screenshot(path=SHOTS / f"lesson_3_{case}.png", full_page=True)
    # 4. Hide the tumour: the meningioma again, paint, ask again.
    _example(page, "compare", 1)
    page.locator("#compare-button").click()
    compare.get_by_text("True class: Meningioma").wait_for()
    page.locator("#compare-hide").get_by_text("Hide a region and ask again").click()
    page.locator("#compare-editor canvas").first.wait_for()
    _paint(page, "compare-editor", 0.4)
    page.locator("#compare-hide-button").click()
    page.locator("#compare-hide-answers").get_by_text(re.compile(r"You hid \d+\.\d% of the slice")).wait_for()
    hidden = page.locator("#compare-hide-answers").inner_text()
    assert all(
        re.search(rf"{name} (keeps|changes) its answer|{name}: the MRI check refuses", hidden) for name in ("cnn", "vgg16")
    )
    page.locator("#compare-hide").screenshot(path=SHOTS / "lesson_4_hide.png")
    # 5. Where the models go wrong: the labelled set, its errors, a row opened in Compare.
    _labelled_batch(page)
    assert "accuracy" in page.locator("#batch-summary").inner_text()
    _filter(page, "Errors", "a model reads as another class")
    errors, _ = _view(page)
    page.screenshot(path=SHOTS / "lesson_5_errors.png", full_page=True)
    _filter(page, "Disagreements", "the models read differently")
    if errors:
        _filter(page, "Errors", "a model reads as another class")
        page.locator("#batch-table [data-testid='cell-0-1']").click()
        _selected_tab(page, "Compare")
        compare.get_by_text("True class").wait_for()
        page.wait_for_function(IN_VIEW, arg="compare-answer")
        page.wait_for_function(IDLE, arg="#compare-answer")
        page.wait_for_function("() => !document.querySelector('#compare-hidden img')")  # step 4's hidden slice is gone
        assert "You hid" not in page.locator("#compare-hide-answers").inner_text(), "no answer about another slice"
        page.screenshot(path=SHOTS / "lesson_5_row_in_compare.png")
    # 6. Wrap up: About, the measured figures and why this is not a diagnosis.
    _tab(page, "About")
    page.get_by_text("Can you trust the overlays?").wait_for()
    assert page.get_by_text("never use it to make clinical decisions").first.is_visible()
    page.screenshot(path=SHOTS / "lesson_6_about.png")
    page.close()


def test_teaching_on_a_phone(browser, app_url):
    """390x844: the guess-first panel and the outline come into view with the answer; the batch filter fits."""
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.set_default_timeout(60_000)
    phone.goto(app_url)
    phone.get_by_text("tumor-ai").first.wait_for()
    _hard(phone, "predict", "edge")
    phone.locator("#predict-teaching").get_by_text("Guess first").wait_for()
    phone.locator("#predict-outline input").check()
    phone.locator("#predict-button").click()
    phone.locator("#predict-teaching").get_by_text(f"True class: {_truth('edge')}").wait_for()
    phone.locator("#predict-teaching").get_by_text(OUTLINE_SHOWN[:40]).wait_for()
    phone.wait_for_function("() => Math.abs(document.getElementById('predict-answer').getBoundingClientRect().top) < 200")
    box = phone.locator("#predict-teaching").bounding_box()  # scrolling may land a fraction of a pixel above the top
    assert box and -1 <= box["y"] < 844 and box["x"] + box["width"] <= 390, "the true class is on screen with the answer"
    phone.screenshot(path=SHOTS / "phone_teaching_predict.png")
    _labelled_batch(phone)
    # The table on a phone: every header on one line ("agree" once broke letter by letter), a class name whole in its
    # model's column, each header over its cells; a table wider than the screen scrolls sideways as one.
    columns = phone.evaluate(COLUMN_BOXES)
    assert [column[0] for column in columns] == ["file", "cnn", "vgg16", "agree", "note"]
    assert all(abs(left - cell_left) <= 1 and abs(width - cell_width) <= 1 for _, left, width, cell_left, cell_width in columns)
    heights = phone.evaluate("() => [...document.querySelectorAll('#batch-table th .header-content')].map(h => h.offsetHeight)")
    assert max(heights) < 2 * min(heights) and max(heights) < 30, heights
    cells = ", ".join(f"#batch-table [data-testid^='cell-'][data-col='{col}']" for col in (1, 2, 3))
    assert phone.evaluate(BROKEN_WORDS, f"#batch-table th, {cells}") == []
    phone.locator("#batch-table").scroll_into_view_if_needed()
    phone.screenshot(path=SHOTS / "phone_batch_table.png")
    _filter(phone, "Errors", "a model reads as another class")
    filter_box = phone.locator("#batch-filter").bounding_box()
    assert filter_box and filter_box["x"] + filter_box["width"] <= 390
    phone.locator("#batch-view").scroll_into_view_if_needed()
    phone.screenshot(path=SHOTS / "phone_teaching_batch.png")
    if not _view(phone)[0]:  # no errors (retrained models): any row
        _filter(phone, "All", "every file")
    phone.locator("#batch-table [data-testid='cell-0-1']").click()  # a row, tapped: Compare, its answer in view
    _selected_tab(phone, "Compare")
    phone.locator("#compare-teaching").get_by_text("True class").wait_for()
    phone.wait_for_function(IN_VIEW, arg="compare-answer")
    phone.wait_for_function(IDLE, arg="#compare-answer")
    phone.screenshot(path=SHOTS / "phone_teaching_row_in_compare.png")
    phone.close()
