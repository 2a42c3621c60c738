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
