"""Reliability diagrams: the bins are the ECE's own, a tiny model's validation writes them, the metadata keeps them."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from training.metrics import (
    apply_temperature,
    classification_report,
    expected_calibration_error,
    fit_temperature,
    plot_reliability,
    reliability_bins,
    reliability_figures,
)
from tumor_ai.core.calibration import softmax


def test_the_bins_count_every_image_and_give_the_ece():
    probabilities = np.array([[0.95, 0.05], [0.9, 0.1], [0.42, 0.58], [0.55, 0.45], [0.35, 0.65]])
    targets = np.array([0, 1, 1, 0, 0])
    found = reliability_bins(probabilities, targets, bins=5)  # edges 0, 0.2, ..., 1
    assert found["counts"] == [0, 0, 2, 1, 2]
    assert found["accuracy"][:2] == [None, None] and found["confidence"][:2] == [None, None], "an empty bin: no figures"
    assert found["accuracy"][2:] == [1.0, 0.0, 0.5]
    assert np.allclose(found["confidence"][2:], [(0.58 + 0.55) / 2, 0.65, (0.95 + 0.9) / 2])
    expected = 2 / 5 * abs(1 - 0.565) + 1 / 5 * abs(0 - 0.65) + 2 / 5 * abs(0.5 - 0.925)
    assert abs(expected_calibration_error(probabilities, targets, bins=5) - expected) < 1e-12


def test_the_figures_before_and_after_the_temperature_are_the_report_s():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 4)) * 1.5
    targets = np.array([rng.choice(4, p=row) for row in softmax(logits)])  # calibrated at scale 1
    raw = softmax(logits * 3)  # over-confident
    calibrated = apply_temperature(raw, fit_temperature(raw, targets))
    figures = reliability_figures(raw, calibrated, targets)
    labels = ["a", "b", "c", "d"]
    assert figures["before"]["ece"] == classification_report(raw, targets, labels)["ece"]
    assert figures["after"]["ece"] == classification_report(calibrated, targets, labels)["ece"]
    assert figures["after"]["ece"] < figures["before"]["ece"]
    assert figures["images"] == sum(figures["before"]["counts"]) == sum(figures["after"]["counts"]) == 300
    assert len(figures["edges"]) == 16 and figures["edges"][0] == 0.0 and figures["edges"][-1] == 1.0
    json.dumps(figures)  # plain JSON, as the metadata stores it


def test_the_diagram_is_drawn(tmp_path):
    rng = np.random.default_rng(1)
    raw = rng.dirichlet(np.ones(3), 200)
    targets = rng.integers(0, 3, 200)
    path = tmp_path / "reliability.png"
    plot_reliability(reliability_figures(raw, apply_temperature(raw, 0.5), targets), 0.5, path, "synthetic")
    with Image.open(path) as picture:
        assert picture.size[0] > 400 and len(set(picture.convert("L").getdata())) > 10, "a drawn figure, not a blank"


def test_a_tiny_model_s_validation_gives_the_bins_the_folder_and_its_metadata_keep(dataset_dir, tmp_path):
    """``training.train.validate`` on an untrained CNN: the bins' ECEs are the report's, before and after its
    temperature; they go into the metadata's calibration block (read back the same) and draw the folder's diagram."""
    import keras

    from training.data import load_folder
    from training.networks import build_cnn
    from training.train import validate, write_reliability
    from tumor_ai.model.metadata import RELIABILITY_FILE, Calibration, ModelMetadata, ReliabilityRecord

    root, _ = dataset_dir
    dataset = load_folder(root, sizes=[(48, 48)], cache_dir=tmp_path / "cache", crop="head")
    keras.utils.set_random_seed(0)
    model, metadata = build_cnn(dataset.labels, input_size=(48, 48), filters=(4, 8), dense_units=8)
    held_out = np.arange(0, len(dataset.paths), 3)
    validation = validate(model, metadata, dataset, held_out, (48, 48))
    figures = validation.reliability
    assert figures["images"] == validation.report["images"] == len(held_out)
    assert figures["before"]["ece"] == validation.report["ece"] and figures["after"]["ece"] == validation.ece_after
    metadata.calibration = Calibration(
        temperature=validation.temperature,
        ece_before=validation.report["ece"],
        ece_after=validation.ece_after,
        fitted_on="validation split",
        reliability=ReliabilityRecord.from_dict(figures),
    )
    written = json.loads(metadata.to_json())
    assert written["calibration"]["reliability"] == figures, "the record is the figures, key for key"
    assert ModelMetadata.from_dict(written) == metadata
    write_reliability(tmp_path, metadata.calibration, "tiny")
    assert (tmp_path / RELIABILITY_FILE).is_file()
    write_reliability(tmp_path / "none", Calibration(), "no split")  # a run without validation draws nothing
    assert not (tmp_path / "none").exists()
