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
