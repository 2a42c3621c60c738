"""The evaluation report's format on a <class>/ folder."""

from __future__ import annotations

import json

import pytest

from training.evaluate import main as evaluate_main


def test_report_format(dataset_dir, slot_models, tmp_path):
    root, _ = dataset_dir
    out = tmp_path / "report.json"
    evaluate_main(["--model", str(slot_models["cnn"]), "--data", str(root), "--out", str(out), "--batch-size", "16"])
    report = json.loads(out.read_text())
    labels = ["glioma", "meningioma", "notumor", "pituitary"]
    assert report["images"] == 60
    for key in ("accuracy", "macro_f1", "ece", "ece_uncalibrated", "per_class", "confusion_matrix", "predictions"):
        assert key in report
    assert set(report["per_class"]) == set(labels)
    assert set(report["per_class"]["glioma"]) == {"precision", "recall", "f1", "support"}
    matrix = report["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == 60 and report["confusion_matrix"]["labels"] == labels
    record = report["predictions"][0]
    assert set(record) == {"path", "label", "predicted", "probabilities"}
    assert record["path"] == "glioma/glioma_000.png" and record["label"] == "glioma"
    assert set(record["probabilities"]) == set(labels)
    assert abs(sum(record["probabilities"].values()) - 1) < 1e-4
    assert out.with_suffix(".png").exists()


def test_unknown_class_folder_is_a_clear_error(dataset_dir, slot_models, tmp_path):
    (tmp_path / "data" / "astrocytoma").mkdir(parents=True)
    with pytest.raises(SystemExit, match="not classes of this model"):
        evaluate_main(["--model", str(slot_models["cnn"]), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "r.json")])


def test_subset_scores_only_the_side_of_the_split_asked_for(dataset_dir, slot_models, tmp_path):
    import shutil

    root, _ = dataset_dir
    model = tmp_path / "model"
    shutil.copytree(slot_models["cnn"], model)
    validation = ["glioma/glioma_003.png", "notumor/notumor_004.png", "pituitary/pituitary_005.png"]
    (model / "split.json").write_text(json.dumps({"validation": validation}))
    reports = {}
    for subset in ("validation", "train"):
        out = tmp_path / f"{subset}.json"
        evaluate_main(["--model", str(model), "--data", str(root), "--subset", subset, "--out", str(out)])
        reports[subset] = json.loads(out.read_text())
    assert sorted(record["path"] for record in reports["validation"]["predictions"]) == validation
    assert reports["train"]["images"] == 60 - 3 and not set(validation) & {r["path"] for r in reports["train"]["predictions"]}


def _with_validation_split(source, model, validation: list[str], temperature: float = 0.5) -> None:
    """A copy of a slot model that records a validation split (split.json) and figures on it, as a split run does."""
    import shutil

    from tumor_ai.model.metadata import Calibration, Metrics, ModelMetadata, Scores

    shutil.copytree(source, model)
    (model / "split.json").write_text(json.dumps({"validation": validation}))
    metadata = ModelMetadata.read(model / "tumor_ai.json")
    metadata.metrics = Metrics(Scores(images=len(validation), accuracy=0.5, macro_f1=0.5, ece=0.1, nll=1.0))
    metadata.calibration = Calibration(temperature=temperature, ece_before=0.1, ece_after=0.05, fitted_on="validation split")
    (model / "tumor_ai.json").write_text(metadata.to_json())


def test_reliability_is_backfilled_into_a_model_folder_from_its_validation_split(dataset_dir, slot_models, tmp_path, capsys):
    """``--subset validation --reliability --write``: the diagram beside the report and in the model folder, its bins
    (the report's ECEs, before and after the model's temperature) in the metadata's calibration block, the card."""
    from tumor_ai.model.metadata import RELIABILITY_FILE, ModelMetadata

    root, _ = dataset_dir
    model = tmp_path / "model"
    validation = sorted(f"{label}/{label}_{index:03d}.png" for label in ("glioma", "notumor", "pituitary") for index in (3, 4))
    _with_validation_split(slot_models["cnn"], model, validation)
    out = tmp_path / "validation.json"
    common = ["--model", str(model), "--data", str(root), "--out", str(out), "--reliability"]
    evaluate_main([*common, "--subset", "validation", "--write"])
    report = json.loads(out.read_text())
    assert (tmp_path / "validation_reliability.png").is_file() and (model / RELIABILITY_FILE).is_file()
    metadata = ModelMetadata.read(model / "tumor_ai.json")
    record = metadata.calibration.reliability
    assert record.images == report["images"] == len(validation) and record.to_dict()["edges"] == report["reliability"]["edges"]
    assert (record.before.ece, record.after.ece) == (report["ece_uncalibrated"], report["ece"])
    assert record.command.startswith("python -m training.evaluate --model") and "--reliability" in record.command
    assert metadata.calibration.temperature == 0.5 and metadata.calibration.ece_after == 0.05, "the fit is kept as it was"
    assert f"]({RELIABILITY_FILE})" in (model / "README.md").read_text()
    assert "reliability diagram: ECE" in capsys.readouterr().out


def test_reliability_is_written_only_for_the_images_the_temperature_was_fitted_on(dataset_dir, slot_models, tmp_path):
    from tumor_ai.model.metadata import RELIABILITY_FILE

    root, _ = dataset_dir
    model = tmp_path / "model"
    _with_validation_split(slot_models["cnn"], model, ["glioma/glioma_003.png", "notumor/notumor_004.png"])
    before = (model / "tumor_ai.json").read_text()
    common = ["--model", str(model), "--data", str(root), "--out", str(tmp_path / "r.json"), "--write"]
    with pytest.raises(SystemExit, match="measured neither"):
        evaluate_main([*common, "--subset", "validation"])
    with pytest.raises(SystemExit, match="pass --subset validation"):
        evaluate_main([*common, "--reliability"])
    (model / "split.json").write_text(json.dumps({"validation": ["glioma/glioma_003.png"]}))  # not the recorded 2
    with pytest.raises(SystemExit, match="1 validation images were scored, but the model's metadata records 2"):
        evaluate_main([*common, "--subset", "validation", "--reliability"])
    assert (model / "tumor_ai.json").read_text() == before and not (model / RELIABILITY_FILE).exists()
    evaluate_main([*common[:-1], "--subset", "validation", "--reliability"])  # no --write: the report's picture only
    assert (tmp_path / "r_reliability.png").is_file() and not (model / RELIABILITY_FILE).exists()
