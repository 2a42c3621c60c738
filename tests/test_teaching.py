"""The teaching features without a browser: the examples' manifest, matching a slice by content, the tumour outline,
the true class held back until the models answer, and a labelled batch's filter and its rows opened in Compare.

The manifest and its slices are committed (``scripts/choose_hard_cases.py`` wrote them from ../shared, which these
tests never need); the models here are the small untrained ones of ``conftest.py``.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, LABELS, ROOT
from PIL import Image

from tumor_ai.app import handlers
from tumor_ai.core import wording
from tumor_ai.core.examples import CASES, MANIFEST, ExampleBook, load_examples, mask_at, pixel_key
from tumor_ai.core.explain import OUTLINE_COLOUR, outlined
from tumor_ai.core.imaging import read_image


@pytest.fixture(scope="module")
def examples():
    return load_examples(EXAMPLES)


def test_the_manifest_labels_every_example_and_names_one_hard_case_per_reason(examples):
    manifest = json.loads((EXAMPLES / MANIFEST).read_text())
    assert manifest["command"].startswith("python scripts/choose_hard_cases.py")
    assert {path.name for path in EXAMPLES.glob("*.jpg")} <= {example.path.name for example in examples}
    assert sorted(example.case for example in examples if example.hard) == sorted(CASES)
    for example in examples:
        assert example.path.is_file() and example.label in LABELS
        assert example.source.startswith(f"{example.label}/"), "the true class is the dataset folder it came from"
        if not example.hard:
            assert example.path.stem == example.label
        if example.mask is not None:
            size = Image.open(example.path).size
            assert Image.open(example.mask).size == size and mask_at(example.mask, size[::-1]).any()
    assert sum(example.mask is not None for example in examples) >= 4, "outlines to draw, the one-per-class tumours' too"
    for entry in manifest["examples"]:
        if entry.get("case"):
            assert entry["rule"] and entry["answers_when_chosen"], "the record of why it was chosen"


def test_every_example_is_held_out_by_both_shipped_models(examples):
    splits = [set(json.loads((ROOT / "models" / name / "split.json").read_text())["validation"]) for name in ("cnn", "vgg16")]
    assert splits[0] == splits[1]
    assert all(example.source in splits[0] for example in examples)
    assert len({pixel_key(read_image(example.path).pixels) for example in examples}) == len(examples), "no two the same"


def test_a_slice_is_found_by_its_content_whatever_its_name(examples, tmp_path):
    book = ExampleBook(examples)
    example = next(example for example in examples if example.hard and example.mask is not None)
    renamed = tmp_path / "upload.jpg"
    renamed.write_bytes(example.path.read_bytes())
    as_png = tmp_path / "pasted.png"
    Image.fromarray(read_image(example.path).pixels).save(as_png)
    for copy in (renamed, as_png):
        assert book.find(read_image(copy).pixels) == example
    other = read_image(example.path).pixels.copy()
    other[0, 0] ^= 1
    assert book.find(other) is None and book.outline(other, (10, 10)) is None
    assert book.outline(read_image(renamed).pixels, (100, 120)).shape == (100, 120)


def test_the_outline_is_drawn_on_the_mask_edge_only():
    picture = np.full((64, 64, 3), 90, np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True  # drawn at half the picture's size: resized with it
    drawn = outlined(picture, mask)
    white = (drawn == OUTLINE_COLOUR).all(axis=-1)
    assert white.any() and not white[20:44, 20:44].any() and not white[:14].any(), "a ring, not a filled square"
    assert outlined(picture, None) is picture and outlined(picture, np.zeros((64, 64), bool)) is picture


def _payload(path) -> dict:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def _example(examples, case: str | None = None, label: str | None = None):
    return next(e for e in examples if e.case == case and (label is None or e.label == label))


def test_guess_first_holds_the_true_class_back_until_the_model_answers(slot_predictors, examples):
    example = _example(examples, "disagree")
    state = handlers.SessionSlice(str(example.path), read_image(example.path))
    held = handlers.teaching(slot_predictors, state, None, True, False)
    assert "Guess first" in held and wording.display_name(example.label) not in held
    assert wording.HARD_CASES["disagree"] in held and "%" not in held, "the reason, never the answers recorded"
    shown = handlers.teaching(slot_predictors, state, None, False, False)
    assert f"True class: {wording.display_name(example.label)}" in shown and "%" not in shown
    answer = handlers.predict(slot_predictors, _payload(example.path), "cnn", 0.5, handlers.TOP_CLASS, state)
    told = handlers.teaching(slot_predictors, state, answer.explained, True, False)
    said = wording.display_name(answer.explained.prediction.label)
    assert f"True class: {wording.display_name(example.label)}" in told and f"cnn reads {said}" in told
    assert ("**right**" in told) == (answer.explained.prediction.label == example.label)
    compared = handlers.compare(slot_predictors, _payload(example.path), 0.5, state)
    both = handlers.teaching(slot_predictors, state, compared.explained, True, False)
    assert "cnn reads" in both and "vgg16 reads" in both
    other = handlers.SessionSlice("x", read_image(_png(np.full((64, 64), 80))))
    assert handlers.teaching(slot_predictors, other, None, True, False) == ""
    assert wording.NO_OUTLINE in handlers.teaching(slot_predictors, other, None, True, True)


def _png(gray: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(gray.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _white(path: str) -> int:
    """Near-white pixels in a drawn picture (a JPEG: the outline's white is not exact); the map's colours have none."""
    return int((np.asarray(Image.open(path).convert("RGB")).min(axis=-1) > 200).sum())


def test_the_outline_toggle_draws_over_both_maps_without_a_model_call(slot_predictors, examples, monkeypatch):
    example = _example(examples, None, "meningioma")
    state = handlers.SessionSlice(str(example.path), read_image(example.path))
    plain = handlers.predict(slot_predictors, _payload(example.path), "cnn", 0.0, handlers.TOP_CLASS, state)
    traced = handlers.predict(slot_predictors, _payload(example.path), "cnn", 0.0, handlers.TOP_CLASS, state, outline=True)
    assert _white(traced.overlay) > _white(plain.overlay) + 200 and _white(traced.heatmap) > _white(plain.heatmap) + 200
    for predictor in slot_predictors.values():
        monkeypatch.setattr(predictor, "run", lambda *a, **k: pytest.fail("the outline toggle must not run a model"))
    off = handlers.show_outline(slot_predictors, False, traced.explained, 0.0, handlers.TOP_CLASS)
    assert _white(off.overlay) < _white(traced.overlay)
    monkeypatch.undo()
    compared = handlers.compare(slot_predictors, _payload(example.path), 0.0, state, outline=True)
    assert all(_white(column.overlay) > _white(plain.overlay) + 200 for column in compared.models.values())
    redrawn = handlers.show_outline_compare(slot_predictors, False, compared.explained, 0.0)
    assert all(_white(redrawn[name]) < _white(compared.models[name].overlay) for name in slot_predictors)
    assert wording.OUTLINE_SHOWN in handlers.teaching(slot_predictors, state, compared.explained, True, True)


def _labelled_zip(tmp_path: Path, examples) -> Path:
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for example in examples:
            handle.write(example.path, f"{example.label}/{example.path.name}")
        handle.writestr("unlabelled.png", _png(np.full((64, 64), 30)))
    return archive


def test_a_labelled_batch_filters_errors_and_disagreements_and_a_row_opens_in_compare(slot_predictors, examples, tmp_path):
    archive = _labelled_zip(tmp_path, examples)
    *_, last = handlers.batch(slot_predictors, [str(archive)], 0.5)
    rows, names, labels = last.rows, list(slot_predictors), LABELS
    assert len(rows) == len(examples) + 1
    table, note, view = handlers.filter_batch(rows, "errors", names, labels)
    wrong = [
        i for i, row in enumerate(rows) if any(handlers._wrong(row, n, handlers.folder_label(row["file"], labels)) for n in names)
    ]
    assert view == wrong and len(table) == len(wrong) and f"{len(wrong)} of {len(rows)} rows" in note
    assert all(handlers.WRONG_MARK in " ".join(map(str, table.iloc[i].tolist())) for i in range(len(table)))
    _, _, disagreements = handlers.filter_batch(rows, "disagreements", names, labels)
    assert disagreements == [i for i, row in enumerate(rows) if row["agree"] == "no"]
    assert handlers.filter_batch(rows, "all", names, labels)[2] is None
    # The gallery follows the filter: each model's overlay of the rows shown, and only theirs (the files are readable).
    for view in (wrong, disagreements, None):
        drawn = handlers.recolour_batch(last.entries, 0.5, rows, view)
        files = [rows[i]["file"] for i in (range(len(rows)) if view is None else view)]
        assert len(drawn) == len(names) * len(files)
        assert [caption.split(" · ")[0] for _, caption in drawn] == [handlers._short(f) for f in files for _ in names]
    opened = handlers.open_in_compare(slot_predictors, rows, [len(examples) - 1], [str(archive)], 0.5, False, True, 0)
    truth = examples[-1].label
    assert set(opened.compare.explained) <= set(names) and opened.tab.selected == "compare"
    assert f"True class: {wording.display_name(truth)}" in opened.teaching
    assert np.array_equal(np.asarray(Image.open(opened.picture).convert("RGB")), read_image(examples[-1].path).pixels)
    unlabelled = handlers.filter_batch(rows[-1:], "errors", names, labels)
    assert "No file in this batch is labelled" in unlabelled[1]
    with pytest.raises(Exception, match="no longer in the batch input"):
        handlers.open_in_compare(slot_predictors, rows, None, [], 0.5, False, True, 0)


def test_the_page_never_words_the_answers_recorded_when_a_case_was_chosen(examples):
    manifest = json.loads((EXAMPLES / MANIFEST).read_text())
    for entry in manifest["examples"]:
        for case in [entry.get("case")]:
            for guess in (True, False):
                text = wording.example_truth(entry["label"], case, guess, None)
                assert not re.search(r"\d%|\d\.\d", text), text


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("choose_hard_cases", ROOT / "scripts" / "choose_hard_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hard_cases_are_chosen_by_their_rules_and_a_slice_with_an_outline_comes_first(tmp_path, monkeypatch):
    """scripts/choose_hard_cases.py on a drawn dataset with planted answers: each rule picks the slice it should."""
    script = _script()
    monkeypatch.setattr(script, "NEAR_COPY", 1.01)  # drawn heads all look alike; copies are tested below
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:96, 0:96]
    head = (rows - 48) ** 2 + (cols - 48) ** 2 < 36**2
    paths = []
    for label in LABELS:
        for index in range(3):
            path = f"{label}/{label}_{index}.png"
            (tmp_path / "Training" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.where(head, 90 + rng.integers(0, 60, head.shape), 0).astype(np.uint8)).save(
                tmp_path / "Training" / path
            )
            paths.append(path)
            if label != "notumor":
                mask = (rows - (16 if index == 2 and label == "glioma" else 48)) ** 2 + (cols - 48) ** 2 < 8**2
                (tmp_path / "masks" / "Training" / label).mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(tmp_path / "masks" / "Training" / label / f"{label}_{index}.png")

    def answer(label: str, top: float) -> dict:
        rest = (1 - top) / 3
        return {"label": label, "probabilities": {name: top if name == label else rest for name in LABELS}, "is_mri": True}

    answers = {name: {path: answer(path.split("/")[0], 0.9) for path in paths} for name in ("cnn", "vgg16")}
    answers["cnn"]["notumor/notumor_0.png"] = answer("glioma", 0.99)  # both wrong, surest: but it has no outline
    answers["vgg16"]["notumor/notumor_0.png"] = answer("glioma", 0.99)
    answers["cnn"]["glioma/glioma_0.png"] = answer("meningioma", 0.8)
    answers["vgg16"]["glioma/glioma_0.png"] = answer("meningioma", 0.7)
    answers["vgg16"]["meningioma/meningioma_0.png"] = answer("pituitary", 0.85)
    answers["vgg16"]["pituitary/pituitary_0.png"] = answer("pituitary", 0.3)
    answers["cnn"]["pituitary/pituitary_1.png"] = {**answer("pituitary", 0.1), "is_mri": False}  # refused: never chosen
    cases = script.choose(tmp_path, paths, answers, script.Chosen({}))
    assert [case["case"] for case in cases] == list(CASES)
    assert [case["path"] for case in cases] == [
        "glioma/glioma_0.png",
        "meningioma/meningioma_0.png",
        "pituitary/pituitary_0.png",
        "glioma/glioma_2.png",
    ]
    assert cases[0]["answers"] == {"cnn": "meningioma 0.800", "vgg16": "meningioma 0.700"}
    chosen = script.Chosen({})
    pixels = read_image(tmp_path / "Training" / paths[0]).pixels
    chosen.add(paths[0], pixels)
    monkeypatch.undo()
    assert chosen.copies("x", np.ascontiguousarray(pixels[:, ::-1])), "a mirrored copy is a copy"
    for name, split in (("cnn", ["a.jpg"]), ("vgg16", ["b.jpg"])):
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "split.json").write_text(json.dumps({"validation": split}))
    with pytest.raises(SystemExit, match="split differs"):
        script.validation_split(tmp_path / "models", ["cnn", "vgg16"])
