"""The duplicate/leakage audit on a synthetic set with planted copies and mirrors."""

from __future__ import annotations

import csv
import shutil

from training.audit import audit, main


def test_audit_finds_planted_copies(dataset_dir):
    root, planted = dataset_dir
    rows, summary = audit(str(root), cache_dir=None)
    found = {(row["path_a"], row["path_b"]): row["kind"] for row in rows}
    for a, b in planted["exact"]:
        assert found.get((a, b)) == "exact"
    for a, b in planted["mirror"]:
        assert found.get((a, b)) in ("mirror", "pixel")
    for a, b in planted["near"]:
        assert found.get((a, b)) in ("near", "mirror")
    assert summary["pairs"]["exact"] == 4
    assert summary["cross_label_pairs"] == 0


def test_audit_train_against_test_and_label_conflict(dataset_dir, tmp_path, capsys):
    root, _ = dataset_dir
    test = tmp_path / "test"
    (test / "glioma").mkdir(parents=True)
    (test / "notumor").mkdir(parents=True)
    shutil.copy(root / "glioma" / "glioma_005.png", test / "glioma" / "leaked.png")
    shutil.copy(root / "meningioma" / "meningioma_005.png", test / "notumor" / "mislabelled.png")
    out = tmp_path / "audit.csv"
    main(["--data", str(root), "--test", str(test), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "test images also in train: 2 of 2" in printed
    rows = list(csv.DictReader(out.open()))
    across = [row for row in rows if row["scope"] == "test-train"]
    assert {row["path_a"] for row in across} == {"glioma/leaked.png", "notumor/mislabelled.png"}
    assert any(row["label_conflict"] == "True" for row in across)
