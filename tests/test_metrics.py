"""Calibration: the temperature a miscalibrated model needs, and the ECE it removes."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import apply_temperature, classification_report, expected_calibration_error, fit_temperature
from tumor_ai.core.calibration import softmax


def _model_outputs(scale: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of a synthetic 4-class model right ~70% of the time, its logits scaled by ``scale``.

    The targets are drawn from softmax(logits), so at scale 1 the model is calibrated; a scale above 1
    makes it over-confident, below 1 under-confident.
    """
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(4000, 4)) * 1.5
    logits[np.arange(4000), rng.integers(0, 4, 4000)] += 2.0
    true = softmax(logits)
    targets = np.array([rng.choice(4, p=row) for row in true])
    return softmax(logits * scale), targets


def test_an_over_confident_model_needs_a_temperature_above_one_and_loses_its_ece():
    probabilities, targets = _model_outputs(scale=3.0)
    temperature = fit_temperature(probabilities, targets)
    assert 2.4 < temperature < 3.6, temperature  # undoing the factor 3
    before = expected_calibration_error(probabilities, targets)
    after = expected_calibration_error(apply_temperature(probabilities, temperature), targets)
    assert before > 0.15 and after < 0.03, (before, after)


def test_an_under_confident_model_needs_a_temperature_below_one():
    probabilities, targets = _model_outputs(scale=0.4)
    assert 0.3 < fit_temperature(probabilities, targets) < 0.5


def test_a_calibrated_model_keeps_a_temperature_near_one():
    probabilities, targets = _model_outputs(scale=1.0)
    assert 0.85 < fit_temperature(probabilities, targets) < 1.15


def test_rescaling_probabilities_is_the_softmax_of_the_scaled_logits():
    logits = np.random.default_rng(2).normal(size=(50, 4)) * 3
    np.testing.assert_allclose(apply_temperature(softmax(logits), 2.5), softmax(logits, 2.5), atol=1e-9)


def test_report_counts_a_known_confusion():
    probabilities = np.eye(3)[[0, 0, 1, 2, 2, 1]]
    targets = np.array([0, 1, 1, 2, 2, 2])
    report = classification_report(probabilities, targets, ["a", "b", "c"])
    assert report["confusion_matrix"]["matrix"] == [[1, 0, 0], [1, 1, 0], [0, 1, 2]]
    assert report["accuracy"] == round(4 / 6, 4) and report["per_class"]["c"]["recall"] == round(2 / 3, 4)


@pytest.mark.parametrize("folder", ["cnn", "vgg16"])
def test_scikit_learn_gives_the_shipped_reports_numbers(folder):
    """The shipped reports were computed by the hand-written metrics; their confusion matrices fix every count."""
    import json
    from pathlib import Path

    report = json.loads((Path(__file__).resolve().parent.parent / "models" / folder / "validation_report.json").read_text())
    matrix = np.array(report["confusion_matrix"]["matrix"])
    labels = report["confusion_matrix"]["labels"]
    pairs = [
        (true, predicted)
        for true in range(len(labels))
        for predicted in range(len(labels))
        for _ in range(matrix[true, predicted])
    ]
    targets = np.array([true for true, _ in pairs])
    probabilities = np.eye(len(labels))[[predicted for _, predicted in pairs]]
    again = classification_report(probabilities, targets, labels)
    assert again["confusion_matrix"]["matrix"] == report["confusion_matrix"]["matrix"]
    assert (again["accuracy"], again["macro_f1"], again["per_class"]) == (
        report["accuracy"],
        report["macro_f1"],
        report["per_class"],
    )


def _flip_case(gained: int, lost: int, rows: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities right on ``rows`` images but for the flip's gains and losses (mirror images sure of their answer)."""
    targets = np.arange(rows) % 4
    plain = np.full((rows, 4), 0.05)
    plain[np.arange(rows), targets] = 0.85
    mirrored = plain.copy()
    for index in range(gained):  # wrong alone, put right by a mirror image sure of the truth
        plain[index] = np.roll(plain[index], 1)
        mirrored[index] = 0.01
        mirrored[index, targets[index]] = 0.97
    for index in range(gained, gained + lost):  # right alone, put wrong by a mirror image sure of another class
        mirrored[index] = 0.01
        mirrored[index, (targets[index] + 1) % 4] = 0.97
    return plain, mirrored, targets


def test_the_flip_is_adopted_only_for_a_gain_chance_is_unlikely_to_give():
    """Two more validation images right do not pay for doubling every answer; twenty against two do."""
    from training.train import test_time_flip_choice

    labels = ["a", "b", "c", "d"]
    small = test_time_flip_choice(*_flip_case(4, 2), labels)
    assert small["with"]["accuracy"] > small["without"]["accuracy"] and not small["adopted"]
    assert "4 put right, 2 put wrong" in small["rule"]
    assert test_time_flip_choice(*_flip_case(20, 2), labels)["adopted"]
    assert not test_time_flip_choice(*_flip_case(0, 0), labels)["adopted"]
