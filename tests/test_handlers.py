"""The app's handlers called directly, as build_app wires them, without a server."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from tumor_ai.app import handlers
from tumor_ai.model.labels import display_name


@pytest.fixture
def no_model_calls(slot_predictors, monkeypatch):
    """After this fixture is called, any forward pass of any model fails the test."""

    def forbid(*_args, **_kwargs):
        raise AssertionError("a model was called")

    def arm():
        for predictor in slot_predictors.values():
            monkeypatch.setattr(predictor, "_function", forbid)

    return arm


def _pixels(path: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))


def _payload(path) -> dict:
    return {"path": str(path), "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def test_same_upload_runs_again_from_the_session_even_when_its_file_is_gone(slot_predictors, example_paths, tmp_path):
    upload = tmp_path / "slice.jpg"
    upload.write_bytes(example_paths["glioma"].read_bytes())
    first = handlers.predict(slot_predictors, _payload(upload), "cnn", 0.5, handlers.TOP_CLASS, None)
    state = first.slice
    upload.unlink()  # e.g. the cache sweep, or another session's copy of the same bytes
    second = handlers.predict(slot_predictors, _payload(upload), "vgg16", 0.5, handlers.TOP_CLASS, state)
    assert first.details["model"] == "cnn" and second.details["model"] == "vgg16" and second.slice is state
    with pytest.raises(gr.Error, match="expired"):  # a new session has no copy: it is told what to do
        handlers.predict(slot_predictors, _payload(upload), "cnn", 0.5, handlers.TOP_CLASS, None)


def test_opacity_redraws_without_a_model_call(slot_predictors, example_paths, no_model_calls):
    outputs = handlers.predict(slot_predictors, _payload(example_paths["meningioma"]), "cnn", 0.2, handlers.TOP_CLASS, None)
    explained = outputs.explained
    no_model_calls()
    faint = handlers.redraw(slot_predictors, explained, 0.2, handlers.TOP_CLASS)
    strong = handlers.redraw(slot_predictors, explained, 0.9, handlers.TOP_CLASS)
    assert faint.overlay == outputs.overlay  # the same picture Predict drew, the same cached file
    assert faint.explained is explained and not np.array_equal(_pixels(faint.overlay), _pixels(strong.overlay))
    assert "reads this slice as" in faint.reading


def test_evidence_for_another_class_costs_one_model_call_then_none(slot_predictors, example_paths, monkeypatch):
    outputs = handlers.predict(slot_predictors, _payload(example_paths["glioma"]), "cnn", 0.5, handlers.TOP_CLASS, None)
    explained = outputs.explained
    other = next(label for label in slot_predictors["cnn"].labels if label != explained.prediction.label)
    calls = []
    original = slot_predictors["cnn"].explain
    monkeypatch.setattr(slot_predictors["cnn"], "explain", lambda *args: calls.append(args) or original(*args))
    shown = handlers.redraw(slot_predictors, explained, 0.5, other)
    again = handlers.redraw(slot_predictors, explained, 0.5, other)
    assert len(calls) == 1 and "instead" in shown.reading and "not the model's answer" in shown.reading
    assert shown.overlay == again.overlay
    assert not np.array_equal(_pixels(shown.overlay), _pixels(outputs.overlay))


def test_redraw_before_any_prediction_changes_nothing(slot_predictors):
    assert all(isinstance(value, type(gr.skip())) for value in handlers.redraw(slot_predictors, None, 0.5, "top"))


def test_a_new_bad_upload_clears_the_old_results_and_says_why(example_paths, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    refused = handlers.new_slice(_payload(bad), None)
    assert refused.picture is None, "no broken picture stays in the input"
    assert refused.slice.image is None and "text file" in refused.message and refused.cleared is None
    with pytest.raises(gr.Error, match="text file"):  # Predict on it says the same, without reading it again
        handlers.take_slice(_payload(bad), refused.slice)
    skip = type(gr.skip())
    emptied = handlers.new_slice(None, refused.slice)  # the input emptied by the line above
    assert emptied.slice is None and isinstance(emptied.message, skip), "the reason stays where the answer would be"
    loaded = handlers.new_slice(_payload(example_paths["glioma"]), None)
    assert isinstance(loaded.picture, skip) and loaded.slice.image.pixels.ndim == 3 and loaded.message.startswith("Slice loaded")
    assert loaded.cleared is None
    assert handlers.new_slice(None, loaded.slice).message == "", "a good slice removed by hand clears its message"


def test_a_file_opened_with_the_button_keeps_its_notes_when_shown(tmp_path):
    from PIL import Image

    frames = [Image.fromarray(np.full((64, 64), value, np.uint8)) for value in (40, 200)]
    path = tmp_path / "two.tif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    opened = handlers.open_file(str(path))
    state = opened.slice
    assert state.key is None and "first frame" in opened.message
    np.testing.assert_array_equal(_pixels(opened.picture), state.image.pixels)
    shown = Path(opened.picture)
    adopted = handlers.new_slice(_payload(shown), state).slice
    assert adopted is state and state.key == str(shown) and "first frame" in state.image.notes[0]


def test_compare_slider_recolours_without_a_model_call(slot_predictors, example_paths, no_model_calls):
    outputs = handlers.compare(slot_predictors, _payload(example_paths["pituitary"]), 0.3, None)
    no_model_calls()
    faint = handlers.recolour_compare(slot_predictors, outputs.explained, 0.3)
    strong = handlers.recolour_compare(slot_predictors, outputs.explained, 1.0)
    assert faint["cnn"] == outputs.models["cnn"].overlay
    assert not np.array_equal(_pixels(faint["cnn"]), _pixels(strong["cnn"]))


def _run_batch(predictors, paths) -> list[handlers.BatchOutputs]:
    """Every yield of the Batch tab's generator (the last is the whole batch)."""
    return list(handlers.batch(predictors, [str(path) for path in paths], 0.5, progress=lambda *a, **k: None))


def test_batch_is_readable_and_its_csv_keeps_full_precision(slot_predictors, example_paths, no_model_calls):
    done = _run_batch(slot_predictors, example_paths.values())[-1]
    assert list(done.table.columns) == ["file", "cnn", "vgg16", "agree", "note"]
    assert all(cell.endswith("%") for cell in done.table["cnn"])
    assert done.summary.startswith("4 files · 0 refused · cnn: ") and "the models disagree on" in done.summary
    assert len(done.gallery) == 8 and all(" · cnn: " in caption or " · vgg16: " in caption for _, caption in done.gallery)
    with open(done.csv) as handle:
        confidence = handle.read().splitlines()[1].split(",")[2]
    assert len(confidence.split(".")[1]) > 4  # not rounded for display
    no_model_calls()
    assert len(handlers.recolour_batch(done.entries, 0.9)) == 8


def test_batch_csv_carries_every_class_probability_of_each_model(slot_predictors, example_paths):
    with open(_run_batch(slot_predictors, example_paths.values())[-1].csv) as handle:
        rows = list(csv.DictReader(handle))
    labels = slot_predictors["cnn"].labels
    for row in rows:
        for name in slot_predictors:
            shares = [float(row[f"{name} p({label})"]) for label in labels]
            assert sum(shares) == pytest.approx(1.0, abs=1e-4)
            assert max(shares) == pytest.approx(float(row[f"{name} confidence"]), abs=1e-6)


def test_batch_fills_in_as_it_goes_and_folds_duplicates_by_content(slot_predictors, example_paths, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(handlers, "WEB_BATCH_SIZE", 2)
    copy = tmp_path / "renamed copy.png"  # the same pixels under another name and format
    Image.open(example_paths["glioma"]).save(copy)
    paths = [*example_paths.values(), copy, example_paths["glioma"]]
    steps = _run_batch(slot_predictors, paths)
    assert [len(step.table) for step in steps] == [2, 4, 4, 4]  # rows after each 2 files, then the whole batch again
    assert steps[0].summary.startswith("**2/6 files so far")
    assert "2 duplicates folded into the first copy's row" in steps[-1].summary
    table = steps[-1].table
    glioma = table[table["file"] == "glioma.jpg"]["note"].item()
    assert "also uploaded as renamed copy.png" in glioma and glioma.count("also uploaded as") == 2


def test_a_labelled_zip_gets_accuracy_and_a_confusion_matrix(slot_predictors, example_paths, tmp_path):
    from PIL import Image

    archive = tmp_path / "labelled.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for label, path in example_paths.items():
            folder = {"notumor": "no_tumor", "pituitary": "Pituitary_Tumour"}.get(label, label)
            handle.write(path, f"set/{folder}/{label}.jpg")
        mirrored = io.BytesIO()
        Image.open(example_paths["glioma"]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored, format="PNG")
        handle.writestr("unlabelled.png", mirrored.getvalue())  # a new picture, in no class folder
    done = _run_batch(slot_predictors, [archive])[-1]
    text = done.summary
    assert "Labelled by folder: 4 of 5 files" in text
    for name in slot_predictors:
        rows = done.table[name].tolist()
        right = sum(cell.startswith(display_name(label)) for cell, label in zip(rows, example_paths))
        assert f"{name}: accuracy {right / 4:.1%} ({right} of 4 readable files)" in text
        assert f"| {name}: folder ↓, read as → |" in text


def test_concurrent_identical_outputs_never_expose_a_half_written_file(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    pixels = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda _: handlers.cache_picture(pixels, "same.png"), range(32)))
    assert len(set(paths)) == 1 and not list(Path(paths[0]).parent.glob(".same.png.*"))
    np.testing.assert_array_equal(_pixels(paths[0]), pixels)


def test_a_refused_file_from_the_button_says_why_with_its_name_escaped(tmp_path):
    bad = tmp_path / "scan.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    opened = handlers.open_file(str(bad))
    assert opened.message.startswith("**scan\\.dcm\\: "), "the file name is escaped: shown as itself, never markup"


def test_switching_the_model_answers_the_same_slice_at_once(slot_predictors, example_paths, monkeypatch):
    shown = handlers.predict(slot_predictors, _payload(example_paths["glioma"]), "vgg16", 0.5, handlers.TOP_CLASS, None)
    monkeypatch.setattr(handlers, "read_image", lambda *_: pytest.fail("the file is read again"))
    switched = handlers.model_switched(slot_predictors, "cnn", 0.5, handlers.TOP_CLASS, shown.slice, shown.explained)
    assert switched.details["model"] == "cnn" and switched.explained.model == "cnn" and switched.label is not None
    assert "The cnn model reads this slice" in switched.reading and "press Predict" not in switched.reading
    skip = type(gr.skip())
    kept = handlers.model_switched(slot_predictors, "cnn", 0.5, handlers.TOP_CLASS, switched.slice, switched.explained)
    assert all(isinstance(value, skip) for value in kept), "the same model: nothing changes"
    nothing = handlers.model_switched(slot_predictors, "cnn", 0.5, handlers.TOP_CLASS, None, None)
    assert all(isinstance(value, skip) for value in nothing), "no answer on screen: nothing to redo"


def test_a_batch_whose_uploads_expired_says_so_before_any_work(slot_predictors, example_paths, tmp_path):
    gone = tmp_path / "swept.jpg"
    with pytest.raises(gr.Error, match="1 of the 2 uploaded files have expired"):
        next(handlers.batch(slot_predictors, [str(example_paths["glioma"]), str(gone)], 0.5, progress=lambda *a, **k: None))


def test_copies_of_one_picture_within_one_group_fold_into_its_row(slot_predictors, example_paths, tmp_path):
    """Issue 41.3: a copy in the same group of files indexed a row not yet added, and the whole batch failed."""
    from PIL import Image

    copy = tmp_path / "same pixels.png"
    Image.open(example_paths["glioma"]).save(copy)
    paths = [example_paths["glioma"], copy, example_paths["glioma"], example_paths["pituitary"]]  # one group of 8
    steps = _run_batch(slot_predictors, paths)
    table = steps[-1].table
    assert len(table) == 2 and "2 duplicates folded into the first copy's row" in steps[-1].summary
    note = table[table["file"] == "glioma.jpg"]["note"].item()
    assert "also uploaded as same pixels.png" in note and note.count("also uploaded as") == 2


def test_a_refused_file_from_the_button_empties_the_input_and_clears_the_old_answer(slot_predictors, example_paths, tmp_path):
    shown = handlers.predict(slot_predictors, _payload(example_paths["meningioma"]), "cnn", 0.5, handlers.TOP_CLASS, None)
    assert shown.label is not None
    bad = tmp_path / "CT_small.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)  # not a readable slice
    opened = handlers.open_file(str(bad))
    assert opened.picture is None, "the old slice must leave the input"
    assert opened.cleared is None, "the old answer, overlay and reading are cleared"
    assert opened.slice.image is None and opened.message.startswith("**")
    emptied = handlers.new_slice(None, opened.slice)  # the input's own change to empty keeps the reason
    assert isinstance(emptied.message, type(gr.skip()))
    with pytest.raises(gr.Error, match="Upload an MRI slice first"):  # Predict does not read the old slice again
        handlers.predict(slot_predictors, None, "cnn", 0.5, handlers.TOP_CLASS, emptied.slice)


def test_hide_a_region_asks_each_model_once_and_never_shows_a_refused_slices_numbers(slot_predictors, example_paths, monkeypatch):
    from dataclasses import replace

    state = handlers.new_slice(_payload(example_paths["meningioma"]), None).slice
    height, width = state.image.pixels.shape[:2]
    layer = np.zeros((height, width, 4), np.uint8)
    layer[height // 3 : height // 2, width // 3 : width // 2] = 255
    calls = {}
    for name, predictor in slot_predictors.items():
        original = predictor.predict

        def counted(images, batch_size=16, name=name, original=original):
            calls[name] = calls.get(name, 0) + 1
            results = original(images, batch_size)
            if name == "vgg16" and len(results) == 2:  # the MRI check refuses the hidden slice
                results[1] = replace(results[1], is_mri=False, plausible=None)
            return results

        monkeypatch.setattr(predictor, "predict", counted)
    hidden = handlers.hide_and_ask(slot_predictors, {"layers": [layer]}, state)
    assert calls == {name: 1 for name in slot_predictors}, "one pass per model, the slice and its hidden copy together"
    assert "**vgg16**: the MRI check refuses the slice with the region hidden" in hidden.answers
    table = [line for line in hidden.answers.splitlines() if line.startswith("| ") and "class" not in line]
    assert table and all(line.rstrip(" |").endswith("refused by the MRI check)") for line in table)
    assert all("→" in line.split(" | ")[1] for line in table), "the cnn's column keeps its before → after"


def test_stop_says_the_batch_stopped_and_that_a_new_run_starts_over():
    shown = "**8/120 files so far…** 8 files · cnn: 2 Glioma"
    status, summary, running = handlers.stop_batch(True, shown)
    assert status.startswith("**Stopped after 8 of 120 files.**") and "starts over from the first file" in status
    assert "so far" not in summary and summary.startswith("8 files") and running is False
    status, summary, running = handlers.stop_batch(False, "")
    assert status == handlers.NO_BATCH_RUNNING and isinstance(summary, type(gr.skip())) and running is False


def test_after_stop_a_late_running_summary_is_settled_and_nothing_else_is():
    stopped = handlers.stop_batch(True, "**16/160 files so far…** 16 files")[0]
    assert handlers.settle_stopped(stopped, "**16/160 files so far…** 16 files") == "16 files"
    assert isinstance(handlers.settle_stopped(stopped, "16 files"), type(gr.skip())), "already settled"
    assert isinstance(handlers.settle_stopped("", "**8/20 files so far…** 8 files"), type(gr.skip())), "a running batch"


def test_after_stop_a_batch_yields_nothing_more_for_that_page(slot_predictors, example_paths, tmp_path):
    """A group already being classified when Stop came ends without its "so far" summary, which would otherwise reach
    the page after Stop's answer and show a stopped batch as running; another page's batch runs on."""
    from types import SimpleNamespace

    from PIL import Image

    paths = []
    for index in range(20):  # distinct pictures: three groups of 8
        pixels = np.asarray(Image.open(example_paths["glioma"]).convert("L"), dtype=np.float32) * (0.7 + 0.01 * index)
        paths.append(tmp_path / f"s{index}.png")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(paths[-1])
    mine, other = SimpleNamespace(session_hash="mine"), SimpleNamespace(session_hash="other")
    quiet = {"progress": lambda *a, **k: None}
    running = handlers.batch(slot_predictors, [str(path) for path in paths], 0.5, request=mine, **quiet)
    elsewhere = handlers.batch(slot_predictors, [str(path) for path in paths], 0.5, request=other, **quiet)
    first = next(running)
    assert "8/20 files so far" in first.summary and "8/20 files so far" in next(elsewhere).summary
    handlers.stop_batch(True, first.summary, request=mine)
    assert list(running) == [], "nothing after Stop"
    assert len(list(elsewhere)) == 3, "the other page's batch is not stopped: 16/20, 20/20, then the whole"
    assert "mine" not in handlers._STOPPED, "the flag ends with its batch"


def test_the_map_of_an_unlikely_class_is_drawn_as_weak_as_its_probability_and_says_so(slot_predictors, example_paths):
    from tumor_ai.core.explain import heatmap
    from tumor_ai.core.wording import WEAK_EVIDENCE

    outputs = handlers.predict(slot_predictors, _payload(example_paths["glioma"]), "cnn", 0.5, handlers.TOP_CLASS, None)
    probabilities = outputs.explained.prediction.probabilities
    unlikely = min(probabilities, key=probabilities.get)
    shown = handlers.redraw(slot_predictors, outputs.explained, 0.5, unlikely)
    index = slot_predictors["cnn"].labels.index(unlikely)
    cam, chance = outputs.explained.cams[index], probabilities[unlikely]
    drawn = _pixels(shown.heatmap).astype(int)
    expected = heatmap(cam * chance, outputs.explained.display.shape[:2]).astype(int)
    assert np.abs(drawn - expected).mean() < 3, "the map is scaled by the class's probability (JPEG aside)"
    if chance < WEAK_EVIDENCE:
        assert "**weak evidence**" in shown.reading and f"{chance:.1%}" in shown.reading
    else:
        assert f"(the model gives it {chance:.0%})" in shown.reading
    # The answer's own map is drawn at full strength, as Compare, Batch and the tools draw it: the tabs agree.
    top = handlers.redraw(slot_predictors, outputs.explained, 0.5, handlers.TOP_CLASS)
    answer_cam = outputs.explained.cams[slot_predictors["cnn"].labels.index(outputs.explained.prediction.label)]
    full = heatmap(answer_cam, outputs.explained.display.shape[:2]).astype(int)
    assert np.abs(_pixels(top.heatmap).astype(int) - full).mean() < 3


def test_the_colour_bar_marks_where_the_drawn_map_peaks_and_says_so(slot_predictors, example_paths):
    """The legend under Predict's map follows ``draw``: its mark at the drawn map's peak (1 for the answer, the class's
    probability for another), its words the same, and nothing while no map is shown."""
    import re

    outputs = handlers.predict(slot_predictors, _payload(example_paths["glioma"]), "cnn", 0.5, handlers.TOP_CLASS, None)
    explained = outputs.explained
    answer = handlers.evidence_legend(slot_predictors, explained, handlers.TOP_CLASS)
    answer_cam = explained.cams[slot_predictors["cnn"].labels.index(explained.prediction.label)]
    peak = float(answer_cam.max())  # 1 at the layer's grid; placing it over the slice may round it off
    assert f'data-peak="{peak:.4f}"' in answer and f"left: {100 * peak:.1f}%" in answer and "Drawn at full strength" in answer
    probabilities = explained.prediction.probabilities
    other = min(probabilities, key=probabilities.get)
    handlers.redraw(slot_predictors, explained, 0.5, other)  # the map drawn first, as the page does before its legend
    legend = handlers.evidence_legend(slot_predictors, explained, other)
    index = slot_predictors["cnn"].labels.index(other)
    peak = float(re.search(r'data-peak="([\d.]+)"', legend)[1])
    assert abs(peak - float((explained.cams[index] * probabilities[other]).max())) < 1e-4
    assert f"{display_name(other)} is not the model&#x27;s answer" in legend and "red" in legend
    assert handlers.evidence_legend(slot_predictors, None, handlers.TOP_CLASS) == ""
