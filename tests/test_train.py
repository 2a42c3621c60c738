"""One short training run per architecture on the synthetic dataset, end to end."""

from __future__ import annotations

import json

import pytest

from training.train import main as train_main
from tumor_ai.models import ModelMetadata, load_model


@pytest.mark.parametrize(
    "arguments",
    [
        ["--model", "cnn", "--input-size", "48", "--epochs", "1"],
        [
            "--model",
            "vgg16",
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--backbone-weights",
            "none",
            "--fine-tune",
            "--fine-tune-epochs",
            "1",
        ],
    ],
    ids=["cnn", "vgg16"],
)
def test_one_epoch_writes_a_complete_model_folder(arguments, dataset_dir, tmp_path):
    root, _ = dataset_dir
    out = tmp_path / arguments[1]
    train_main([*arguments, "--data", str(root), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--batch-size", "8"])
    for name in (
        "model.keras",
        "tumor_ai.json",
        "README.md",
        "split.json",
        "validation_report.json",
        "history.png",
        "confusion_matrix.png",
    ):
        assert (out / name).exists(), name
    model, metadata = load_model(out)
    assert isinstance(metadata, ModelMetadata)
    assert metadata.labels == ["glioma", "meningioma", "notumor", "pituitary"]
    assert metadata.dataset["validation_images"] + metadata.dataset["train_images"] == 60
    assert 0.0 <= metadata.metrics["validation"]["accuracy"] <= 1.0
    assert metadata.calibration["temperature"] > 0
    assert metadata.libraries["keras"].startswith("3.")
    assert model.get_layer(metadata.cam_layer) is not None
    split = json.loads((out / "split.json").read_text())
    assert len(split["validation"]) == metadata.dataset["validation_images"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: keras") and "not a medical device" in card
    if metadata.architecture == "vgg16":
        assert "arXiv:1409.1556" in card and "CC BY 4.0" in card
        assert set(metadata.training["epochs_run"]) == {"stage1", "stage2"}


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    text = capsys.readouterr().out
    assert "--backbone-weights" in text and "python -m training.train --model cnn" in text
