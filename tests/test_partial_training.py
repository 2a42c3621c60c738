"""Both trainers learn from partial labels ("tumour, type unknown"): two epochs on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_dataset
from test_partial import write_partial

from training import engine
from training.evaluate import main as evaluate_main
from training.partial import load_partial
from training.train import main as train_main
from training.train import validation_probabilities
from tumor_ai.model.folder import load_model

pytestmark = pytest.mark.slow  # trains two small networks


CNN_SMALL = ["--model", "cnn", "--input-size", "48", "--batch-size", "8", "--warmup-epochs", "0.2", "--epochs", "2"]
VGG_SMALL = ["--model", "vgg16", "--input-size", "32", "--batch-size", "8", "--backbone-weights", "none",
             "--head-epochs", "2", "--warmup-epochs", "0.2"]  # fmt: skip


def _partial_loss(out, partial, cache) -> float:
    """Mean ``-log(1 - p_notumor)`` of the saved model on the partial folder's training slices."""
    model, metadata = load_model(out)
    found = load_partial(partial, tuple(metadata.input_size), metadata.crop, 0.2, 0, cache)
    probabilities, _ = validation_probabilities(
        model, found.images[found.train], np.zeros(len(found.train), np.int32), metadata.preprocessing
    )
    return float(np.mean(-np.log(1.0 - probabilities[:, metadata.labels.index("notumor")] + 1e-7)))


@pytest.mark.parametrize("recipe", [CNN_SMALL, [*VGG_SMALL, "--epochs", "2"]], ids=["cnn", "vgg16"])
def test_both_trainers_learn_from_partial_labels(recipe, tmp_path):
    data, partial = tmp_path / "data", tmp_path / "br35h"
    write_dataset(data, per_class=16, seed=4)
    write_partial(partial, slices=12, notumor_like=True)
    cache = tmp_path / "cache"
    extra = ["--sequence", "0.3"] if "cnn" in recipe else []
    common = [*recipe, *extra, "--early-stopping-from", "5", "--data", str(data), "--cache-dir", str(cache)]
    train_main([*common, "--out", str(tmp_path / "without")])
    train_main([*common, "--out", str(tmp_path / "with"), "--partial", str(partial), "--partial-repeat", "2"])
    _, metadata = load_model(tmp_path / "with")
    record = metadata.training.partial
    assert record.train_images + record.validation_images == 24
    assert record.images_per_epoch == 2 * record.train_images, "--partial-repeat 2"
    assert 0.0 <= record.validation["sensitivity"] <= 1.0 and record.validation["slices"] == record.validation_slices
    assert metadata.training.arguments["partial"] == str(partial)
    history = engine.read_history(engine.run_directory(cache, tmp_path / "with"))
    assert len(history["partial_loss"]) == 2, "the history tracks the partial slices' own loss"
    # Slices that look like no tumour but are labelled "a tumour": the same two epochs with them fit them better.
    with_partial = _partial_loss(tmp_path / "with", partial, cache)
    without = _partial_loss(tmp_path / "without", partial, cache)
    assert with_partial < without, (with_partial, without)
    # Scored later, the folder it trained on counts only its held-out slice groups.
    out = tmp_path / "report.json"
    evaluate_main(["--model", str(tmp_path / "with"), "--data", str(partial), "--groups", str(partial / "groups.csv"),
                   "--out", str(out)])  # fmt: skip
    tumour = json.loads(out.read_text())["tumour"]
    assert tumour["per_image"]["slices"] == record.validation_images
    assert tumour["per_slice"]["slices"] == record.validation_slices
    # The trainer's own held-out figure, within one slice (another batch composition may tip a near tie).
    slack = 1.0 / record.validation_slices + 1e-6
    assert abs(tumour["per_slice"]["sensitivity"] - record.validation["sensitivity"]) <= slack
    assert tumour["seen_in_training"].startswith("the other slice groups of br35h")
