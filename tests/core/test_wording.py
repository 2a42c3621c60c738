"""The words of a reading (tumor_ai.core.wording): one wording for the page, the API, the Assistant and the MCP tools."""

from __future__ import annotations

import numpy as np
import pytest

from tumor_ai.app import handlers
from tumor_ai.app.tools import Toolbox
from tumor_ai.core.imaging import read_image
from tumor_ai.core.inference import Prediction
from tumor_ai.core.wording import SURE, UNSURE, confidence_words, listed, reading, verdict


def test_reading_is_plain_and_says_not_a_diagnosis():
    text = reading("glioma", 0.93, np.eye(4), "The cnn model")
    assert "Glioma" in text and "93%" in text and "not a medical device" in text
    empty = reading("glioma", 0.48, np.zeros((4, 4)), "The vgg16 model")
    assert "The map is empty" in empty and "came mostly from" not in empty, "an empty map is not said to point anywhere"


def _prediction(label: str, confidence: float, is_mri: bool = True) -> Prediction:
    return Prediction(label, confidence, {label: confidence}, np.zeros((2, 2)), is_mri=is_mri)


THREE_VERDICTS = [
    ([("glioma", 0.97), ("glioma", 0.99), ("glioma", 0.93)], "**All three agree: Glioma** (cnn 97%, vgg16 99%, small 93%)."),
    ([("glioma", 0.97), ("glioma", 0.55), ("glioma", 0.6)], "**All three read Glioma, but vgg16 and small are unsure**"),
    ([("glioma", 0.6), ("glioma", 0.55), ("glioma", 0.8)], "**All three read Glioma, with low confidence**"),
    (
        [("glioma", 0.97), ("glioma", 0.8), ("meningioma", 0.62)],
        "**The models disagree**: 2 of 3 say Glioma (cnn 97%, vgg16 80%); small says Meningioma (62%).",
    ),
    (
        [("glioma", 0.97), ("notumor", 0.8), ("meningioma", 0.62)],
        "**The models disagree**: cnn Glioma (97%), vgg16 No tumour (80%), small Meningioma (62%).",
    ),
]


@pytest.mark.parametrize(
    "cnn,vgg16,expected",
    [
        (("glioma", 0.97), ("meningioma", 0.62), "The models disagree"),
        (("glioma", 0.97), ("glioma", 0.55), "but vgg16 is unsure"),
        (("glioma", 0.6), ("glioma", 0.55), "with low confidence"),
        (("glioma", 0.97), ("glioma", 0.99), "Both models read Glioma"),
    ],
)
def test_compare_verdict_says_what_matters(cnn, vgg16, expected):
    text = verdict({"cnn": _prediction(*cnn), "vgg16": _prediction(*vgg16)})
    assert expected in text
    assert ("disagree" in text) == (cnn[0] != vgg16[0])


@pytest.mark.parametrize("answers,expected", THREE_VERDICTS)
def test_the_verdict_of_three_models_says_how_they_split(answers, expected):
    text = verdict(dict(zip(["cnn", "vgg16", "small"], [_prediction(*answer) for answer in answers])))
    assert expected in text


def test_the_verdict_names_every_model_whose_check_refused_and_one_model_has_nothing_to_compare():
    refused = _prediction("glioma", 0.9, is_mri=False)
    text = verdict({"cnn": refused, "vgg16": refused, "small": _prediction("glioma", 0.9)})
    assert text.endswith("(the MRI check of cnn and vgg16)")
    assert verdict({"a": refused, "b": refused, "c": refused}).endswith("(the MRI check of a, b and c)")
    alone = verdict({"cnn": _prediction("glioma", 0.9)})
    assert alone.startswith("**cnn reads Glioma** (90%).") and "no second reading" in alone


def test_confidence_words_and_lists_have_one_spelling():
    assert [confidence_words(value) for value in (UNSURE - 0.01, UNSURE, SURE)] == ["low", "moderate", "high"]
    assert [listed(names) for names in (["a"], ["a", "b"], ["a", "b", "c"])] == ["a", "a and b", "a, b and c"]


def test_the_page_and_an_agent_say_the_same_thing_in_the_same_words(slot_predictors, example_paths):
    path = str(example_paths["meningioma"])
    page = handlers.predict(slot_predictors, {"path": path}, "cnn", 0.5, handlers.TOP_CLASS, None)
    agent = Toolbox(slot_predictors).classify_slice(read_image(path), "cnn")
    said = page.reading.split("Not a diagnosis")[0]
    assert agent.text.startswith(said), "the reading is the page's, ending with the full disclaimer"
    compared = handlers.compare(slot_predictors, {"path": path}, 0.5, None)
    agent_compared = Toolbox(slot_predictors).compare_models(read_image(path)).text
    assert agent_compared.startswith(compared.summary.split("\n\n")[0]) and "is the surer (" in agent_compared


def test_the_colour_bar_words_follow_the_strength_the_map_is_drawn_at():
    from tumor_ai.core.explain import drawn_strength, jet, legend_html
    from tumor_ai.core.wording import colour_name, map_strength

    cam = np.linspace(0.0, 1.0, 16).reshape(4, 4)
    full = map_strength("glioma", 0.97, True, float(drawn_strength(cam, 0.97, True).max()))
    assert full.startswith("Drawn at full strength: red marks the strongest evidence for Glioma")
    weak = map_strength("meningioma", 0.03, False, float(drawn_strength(cam, 0.03, False).max()))
    assert weak.startswith("Weak evidence") and "3.0%" in weak and "at most dark blue, never red" in weak
    some = map_strength("meningioma", 0.45, False, float(drawn_strength(cam, 0.45, False).max()))
    assert "(45%)" in some and "shows as green, not red" in some
    assert "is empty" in map_strength("pituitary", 0.2, False, 0.0)
    # The names are the colours the maps are drawn in: blue to red, as jet draws them.
    for value, name in ((0.03, "dark blue"), (0.3, "blue"), (0.5, "green"), (0.65, "yellow"), (0.8, "orange"), (1.0, "red")):
        assert colour_name(value) == name
        red, green, blue = (int(channel) for channel in jet(np.array([value]))[0])
        assert {"dark blue": blue > red, "red": red > green and red > blue, "green": green >= red}.get(name, True)
    bar = legend_html("Words & <b>", 0.25)
    assert "left: 25.0%" in bar and "Words &amp; &lt;b&gt;" in bar and "<b>" not in bar
    assert bar.count("rgb(") == 9 and "rgb(0, 0, 127) 0.0%" in bar and "rgb(127, 0, 0) 100.0%" in bar


def test_a_straight_edge_in_a_map_is_explained_for_the_models_that_crop_to_the_head():
    from tumor_ai.core.wording import edge_caveat, map_caveat

    one = edge_caveat({"cnn": "head", "vgg16": "none"})
    assert one.startswith("The cnn model reads only the square around the head, so its map stops at that square's edges")
    assert "not a finding" in one and "vgg16" not in one
    assert edge_caveat({"a": "head", "b": "head"}).startswith("The a and b models read only the square around the head")
    assert edge_caveat({"vgg16": "none"}) == "" and "square" not in map_caveat({"vgg16": "none"})
    assert "not a segmentation" in map_caveat({"cnn": "head"}) and one in map_caveat({"cnn": "head"})


def _shipped(name: str):
    from conftest import ROOT

    from tumor_ai.model.metadata import ModelMetadata

    return ModelMetadata.read(ROOT / "models" / name / "tumor_ai.json")


def test_which_model_is_better_follows_the_numbers_in_their_metadata():
    """The About tab's two sentences and table are worked out from the metadata: change the numbers, the answer follows."""
    import copy

    from tumor_ai.core.wording import comparison_table, which_is_better

    a, b = _shipped("cnn"), _shipped("vgg16")
    for metadata in (a, b):
        metadata.metrics.validation.accuracy = metadata.metrics.validation.macro_f1 = 0.90
        metadata.calibration.ece_after = 0.02
        metadata.localisation.pointing_game.value, metadata.localisation.pointing_game.low = 0.80, 0.77
        metadata.localisation.pointing_game.high = 0.83
        kept = metadata.localisation.erased.tumour_kept
        kept.value, kept.low, kept.high = 0.30, 0.27, 0.33
    even = which_is_better({"cnn": a, "vgg16": b})
    assert even.startswith("**Neither is clearly the more accurate**") and "about as well calibrated" in even
    assert "maps land on the tumour about as often (80% and 80%)" in even and "about as often with it erased" in even
    assert even.count(". ") == 1 and even.endswith("."), "two sentences"
    better = copy.deepcopy(b)
    better.metrics.validation.accuracy, better.metrics.validation.macro_f1 = 0.97, 0.96
    better.calibration.ece_after = 0.005
    better.localisation.pointing_game.value, better.localisation.pointing_game.low = 0.95, 0.93
    better.localisation.pointing_game.high = 0.97
    sentences = which_is_better({"cnn": a, "vgg16": better})
    assert sentences.startswith("**The vgg16 is the more accurate**: 97.0% against 90.0% for the cnn")
    assert "The vgg16's calibration error is lower (ECE 0.005 against 0.020)" in sentences
    assert "the vgg16's map lands on the tumour more often (95% against 80% of outlined slices)" in sentences
    assert "the cnn and the vgg16 still name a tumour about as often" in sentences or "the vgg16 and the cnn" in sentences
    erased = copy.deepcopy(a)
    erased.localisation.erased.tumour_kept.value = 0.05
    erased.localisation.erased.tumour_kept.low, erased.localisation.erased.tumour_kept.high = 0.03, 0.07
    assert "the cnn needs the tumour more (with it erased, it still names a tumour in 5% against 30%)" in which_is_better(
        {"cnn": erased, "vgg16": b}
    )
    table = comparison_table({"cnn": a, "vgg16": better})
    assert "| Accuracy (validation split) | 90.0% | **97.0%** |" in table
    assert "| Still names a tumour with the tumour erased (lower is better) | 30% | 30% |" in table, "no bold for a tie"
    assert which_is_better({"cnn": a}).startswith("Only one model is served")
