"""Split-conformal prediction sets: the coverage guarantee holds empirically, and better models give smaller sets."""

from __future__ import annotations

import numpy as np
import pytest

from tumor_ai.core.conformal import METHODS, cross_fit, describe, plausible, prediction_sets, scores, threshold
from tumor_ai.model.metadata import ConformalRecord

LABELS = ["glioma", "meningioma", "notumor", "pituitary"]


def synthetic_model(count: int, sharpness: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Softmax outputs of a model that is right more often the sharper it is (targets drawn from its own beliefs)."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 4, count)
    logits = rng.normal(0, 1, (count, 4))
    logits[np.arange(count), targets] += sharpness
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probabilities, targets


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_coverage_is_at_least_the_level_over_many_random_splits(method, level):
    probabilities, targets = synthetic_model(4000, 1.5, seed=1)
    coverages = []
    rng = np.random.default_rng(2)
    for _ in range(200):
        order = rng.permutation(len(targets))
        calibrate, test = order[:500], order[500:1500]
        cutoff = threshold(scores(probabilities[calibrate], targets[calibrate], method), level)
        sets = prediction_sets(probabilities[test], cutoff, method)
        coverages.append(np.mean([t in s for t, s in zip(targets[test], sets)]))
    # The guarantee is on average over calibration sets: the mean over 200 draws sits within
    # a few standard errors of >= level (the spread of one draw is about 0.01).
    assert np.mean(coverages) >= level - 3 * np.std(coverages) / np.sqrt(len(coverages))
    assert np.mean(coverages) <= level + 0.03, "not trivially covering with every class"


@pytest.mark.parametrize("method", METHODS)
def test_sets_shrink_as_the_model_gets_better(method):
    sizes = []
    for sharpness in (0.5, 1.0, 2.0):
        probabilities, targets = synthetic_model(2000, sharpness, seed=3)
        sizes.append(cross_fit(probabilities, targets, LABELS, method, 0.9, repeats=5).set_size)
    assert sizes[0] > sizes[1] > sizes[2]


def test_a_sharp_model_gets_the_smaller_sets_of_lac():
    # Non-randomised APS adds the runner-up whenever the top class leaves mass under the threshold,
    # so for a confident model LAC's sets are smaller at the same coverage: why the method is chosen.
    probabilities, targets = synthetic_model(2000, 5.0, seed=3)
    lac, aps = (cross_fit(probabilities, targets, LABELS, method, 0.9, repeats=5) for method in ("lac", "aps"))
    assert lac.set_size < aps.set_size and lac.set_size < 1.1 and lac.coverage >= 0.89


def test_the_top_class_is_always_in_the_set_and_a_served_set_reads_plainly():
    assert prediction_sets(np.array([[0.4, 0.3, 0.2, 0.1]]), 0.0, "lac") == [[0]], "never empty"
    conformal = ConformalRecord(method="lac", thresholds={"0.95": 0.75})
    assert plausible({"glioma": 0.7, "meningioma": 0.28, "notumor": 0.01, "pituitary": 0.01}, conformal) == [
        "glioma",
        "meningioma",
    ]
    assert plausible({"glioma": 1.0}, None) is None, "no fitted block, no set"
    assert plausible({"glioma": 1.0}, ConformalRecord(method="lac", thresholds={"0.9": 0.5})) is None, "not at 95%"
    assert describe(["glioma"], 0.95, 4) == "Plausible at 95%: glioma only."
    assert describe(["glioma", "meningioma"], 0.95, 4) == "Plausible at 95%: glioma or meningioma."
    assert "cannot tell" in describe(["glioma", "meningioma", "pituitary"], 0.95, 4)


def test_cross_fit_reports_every_class():
    probabilities, targets = synthetic_model(400, 2.0, seed=4)
    result = cross_fit(probabilities, targets, LABELS, "aps", 0.95, repeats=3)
    assert set(result.per_class) == set(LABELS) and 0.9 <= result.coverage <= 1.0 and 1.0 <= result.set_size <= 4.0


def test_the_fitted_block_reaches_the_card_the_reading_the_api_and_the_csv(slot_predictors, example_paths, monkeypatch):
    from training.conformal import fit_sets
    from tumor_ai.app import handlers
    from tumor_ai.core.batch import rows_to_csv, stream_rows
    from tumor_ai.publish.card import model_card

    probabilities, targets = synthetic_model(300, 1.0, seed=5)
    block = fit_sets(probabilities, targets, LABELS, repeats=3)
    assert block["method"] in METHODS and set(block["thresholds"]) == {"0.9", "0.95"}
    # every class plausible: the sentence says it cannot tell
    wide = ConformalRecord.from_dict({**block, "thresholds": {"0.9": 1.0, "0.95": 1.0}})
    predictor = slot_predictors["cnn"]
    monkeypatch.setattr(predictor.metadata, "conformal", wide)
    card = model_card(predictor.metadata)
    assert "## Prediction sets" in card and "| 95% |" in card and "Reproduce" not in card
    state = None
    outputs = handlers.predict(slot_predictors, str(example_paths["glioma"]), "cnn", 0.5, "top", state)
    text, details = outputs.reading, outputs.details
    assert "Plausible at 95%" in text and "cannot tell" in text
    assert details["prediction_set"]["level"] == 0.95 and len(details["prediction_set"]["labels"]) == 4
    rows = list(stream_rows({"cnn": predictor}, [example_paths["glioma"]]))
    assert rows[0]["cnn plausible at 95%"].count(" or ") == 3
    assert "cnn plausible at 95%" in rows_to_csv(rows).splitlines()[0]


def test_a_picture_the_mri_check_refuses_gets_no_set(slot_predictors, example_paths, monkeypatch):
    from tumor_ai.app import handlers

    class RefusesEverything:
        def score(self, images, embeddings):
            return [(False, 99.0)] * len(images)

    predictor = slot_predictors["cnn"]
    monkeypatch.setattr(predictor.metadata, "conformal", ConformalRecord(method="lac", thresholds={"0.95": 1.0}))
    monkeypatch.setattr(predictor, "mri_check", RefusesEverything())
    prediction = predictor.predict([np.zeros((64, 64, 3), np.uint8)])[0]
    assert not prediction.is_mri and prediction.plausible is None
    outputs = handlers.predict(slot_predictors, str(example_paths["glioma"]), "cnn", 0.5, "top", None)
    assert outputs.details["prediction_set"] is None and "Plausible" not in outputs.reading
