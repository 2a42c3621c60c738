"""Partial labels ("tumour, type unknown"), the sequence remaps, and scoring a ``tumour`` folder."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import LABELS, synthetic_slice
from PIL import Image

from training import engine
from training.evaluate import main as evaluate_main
from training.partial import (
    PARTIAL_FOLDER,
    label_sets,
    load_partial,
    not_class_target,
    read_groups,
    sensitivity,
    tumour_classes,
    weights_with_partial,
)
from training.sequence import SequenceRemap, head_region, match_histogram
from tumor_ai.model.metadata import ModelMetadata


def write_partial(root, slices: int = 10, seed: int = 3, notumor_like: bool = False) -> None:
    """A ``tumour/`` folder of tumour slices of every type, each with a mirrored copy, and its ``groups.csv``.

    ``notumor_like``: the slices show no blob, as a collection whose tumours look unlike the labelled
    ones would (so a model trained on the labelled classes alone calls them no tumour).
    """
    rng = np.random.default_rng(seed)
    folder = root / PARTIAL_FOLDER
    folder.mkdir(parents=True)
    rows = []
    tumour_labels = [label for label in LABELS if label != "notumor"]
    for index in range(slices):
        pixels = synthetic_slice("notumor" if notumor_like else tumour_labels[index % len(tumour_labels)], rng)
        for copy, image in (("a", pixels), ("b", pixels[:, ::-1])):
            Image.fromarray(image).save(folder / f"s{index}{copy}.png")
            rows.append(
                {"file": f"{PARTIAL_FOLDER}/s{index}{copy}.png", "slice_group": f"g{index}", "representative": int(copy == "a")}
            )
    with (root / "groups.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, ["file", "slice_group", "representative"])
        writer.writeheader()
        writer.writerows(rows)


def test_a_partial_label_costs_minus_log_of_the_tumour_classes_mass():
    labels = ["glioma", "meningioma", "notumor", "pituitary"]
    probabilities = np.array([[0.1, 0.2, 0.6, 0.1], [0.5, 0.2, 0.2, 0.1]], dtype="float32")
    targets = np.array([len(labels), 0])  # the first row is "a tumour, type unknown"
    loss = np.asarray(engine.sparse_crossentropy(0.0, tumour_classes(labels))(targets, probabilities))
    np.testing.assert_allclose(loss, [-np.log(0.4), -np.log(0.5)], rtol=1e-5)
    plain = np.asarray(engine.sparse_crossentropy(0.0)(np.array([0, 0]), probabilities))
    assert loss[1] == pytest.approx(plain[1]), "a labelled row keeps its loss"


def test_an_erased_tumour_under_not_class_costs_minus_log_of_the_other_classes_mass():
    labels = ["glioma", "meningioma", "notumor", "pituitary"]
    probabilities = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.6, 0.1], [0.5, 0.2, 0.2, 0.1]], dtype="float32")
    glioma_erased = not_class_target(0, len(labels))
    assert glioma_erased == 5 and not_class_target(3, len(labels)) == 8
    targets = np.array([glioma_erased, len(labels), 0])
    loss = np.asarray(engine.sparse_crossentropy(0.0, tumour_classes(labels), not_class=True)(targets, probabilities))
    np.testing.assert_allclose(loss, [-np.log(0.3), -np.log(0.4), -np.log(0.5)], rtol=1e-5)
    sets = label_sets(4, None, True)
    assert sets[0].sum() == 0 and sets[1:].tolist() == (1 - np.eye(4)).tolist(), "no partial row without partial labels"
    weights = weights_with_partial({0: 1.0, 1: 2.0, 2: 1.0, 3: 1.0}, 4, partial=False, not_class=True)
    assert sorted(weights) == list(range(9)), "Keras gathers class weights by index: none may be missing"


def test_the_partial_folder_splits_by_slice_group(tmp_path):
    write_partial(tmp_path, slices=10)
    partial = load_partial(tmp_path, (48, 48), "head", 0.2, 0, tmp_path / "cache")
    groups = partial.slices.groups
    assert len(partial.paths) == 20 and len(np.unique(groups)) == 10
    assert not set(groups[partial.train]) & set(groups[partial.validation]), "a slice's copies never straddle the split"
    assert len(partial.validation_representatives) == 2, "one file per held-out slice"
    refit = load_partial(tmp_path, (48, 48), "head", 0.0, 0, tmp_path / "cache")
    assert len(refit.validation) == 0 and len(refit.train) == 20


def test_groups_without_a_representative_get_one(tmp_path):
    table = tmp_path / "groups.csv"
    table.write_text("file,slice_group,representative\na.jpg,g1,0\nb.jpg,g1,0\nc.jpg,g2,1\n")
    found = read_groups(table, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    assert found.groups[0] == found.groups[1] != found.groups[2] != found.groups[3]
    assert found.representative.tolist() == [True, False, True, True]


def test_sensitivity_counts_any_tumour_class():
    labels = ["glioma", "meningioma", "notumor", "pituitary"]
    probabilities = np.eye(4)[[0, 1, 2, 3, 2]]
    found = sensitivity(probabilities, labels)
    assert found["sensitivity"] == 0.6 and found["called"]["notumor"] == 0.4 and found["slices"] == 5


def test_sequence_remaps_keep_the_background_black_and_are_replayable():
    rng = np.random.default_rng(0)
    pool = np.stack([np.repeat(synthetic_slice(label, rng)[..., None], 3, axis=-1) for label in LABELS])
    targets = np.arange(len(LABELS))
    remap = SequenceRemap(pool, targets, rate=1.0, seed=5)
    background = pool[0, ..., 0] == 0
    for kind in ("match", "invert", "curve", "bias"):
        out = remap.remap(pool[0], 0, kind, np.random.default_rng(1))
        assert out.shape == pool[0].shape and out.dtype == np.uint8
        assert (out[background & ~head_region(pool[0, ..., 0].astype(float))] == 0).all(), kind
        assert not np.array_equal(out, pool[0]), f"{kind} changes the slice"
    first, second = pool[:2].copy(), pool[:2].copy()
    remap.apply(first, targets[:2].copy(), np.array([0, 1]), epoch=3)
    remap.apply(second, targets[:2].copy(), np.array([0, 1]), epoch=3)
    assert np.array_equal(first, second), "a draw depends on (seed, epoch, image) only"


def test_histogram_matching_takes_the_reference_distribution():
    rng = np.random.default_rng(2)
    source = synthetic_slice("glioma", rng).astype(float)
    reference = synthetic_slice("notumor", rng).astype(float) * 0.5
    head, reference_head = head_region(source), head_region(reference)
    matched = match_histogram(source, head, reference, reference_head)
    assert np.median(matched[head]) == pytest.approx(np.median(reference[reference_head]), abs=2)


def test_evaluate_scores_a_tumour_folder_per_distinct_slice(slot_models, tmp_path, capsys):
    write_partial(tmp_path / "br35h", slices=6)
    out = tmp_path / "report.json"
    evaluate_main(["--model", str(slot_models["cnn"]), "--data", str(tmp_path / "br35h"),
                   "--groups", str(tmp_path / "br35h" / "groups.csv"), "--out", str(out)])  # fmt: skip
    report = json.loads(out.read_text())
    tumour = report[PARTIAL_FOLDER]
    assert tumour["per_image"]["slices"] == 12 and tumour["per_slice"]["slices"] == 6
    assert sum(tumour["per_slice"]["called"].values()) == pytest.approx(1.0, abs=1e-3)
    called = [record["predicted"] for record in report["predictions"] if record["path"].endswith("a.png")]
    assert tumour["per_slice"]["sensitivity"] == pytest.approx(np.mean([label != "notumor" for label in called]), abs=1e-4)
    assert "accuracy" not in report, "no labelled class folder, no accuracy"
    assert tumour["seen_in_training"] == "none"
    assert "sensitivity per distinct slice" in capsys.readouterr().out


def test_evaluate_writes_the_figures_into_the_metadata_and_the_card(slot_models, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(slot_models["cnn"], model)
    write_partial(tmp_path / "br35h", slices=4)
    arguments = ["--model", str(model), "--data", str(tmp_path / "br35h"), "--out", str(tmp_path / "r.json"), "--write"]
    with pytest.raises(SystemExit, match="--groups"):
        evaluate_main(arguments)
    evaluate_main([*arguments, "--groups", str(tmp_path / "br35h" / "groups.csv")])
    record = ModelMetadata.read(model / "tumor_ai.json").other_collections["br35h"]
    report = json.loads((tmp_path / "r.json").read_text())[PARTIAL_FOLDER]
    assert record.slices == 4 and record.images == 8 and record.sensitivity == report["per_slice"]["sensitivity"]
    assert record.command.startswith("python -m training.evaluate --model") and record.seen_in_training == "none"
    card = (model / "README.md").read_text()
    assert "## Tumours from another collection" in card
    assert f"| br35h | 4 (8 images) | {record.sensitivity:.1%} |" in card


def test_evaluate_mixes_labelled_folders_and_a_tumour_folder(dataset_dir, slot_models, tmp_path):
    root, _ = dataset_dir
    mixed = tmp_path / "mixed"
    write_partial(mixed, slices=3)
    for label in ("glioma", "notumor"):
        (mixed / label).symlink_to(root / label, target_is_directory=True)
    out = tmp_path / "report.json"
    evaluate_main(["--model", str(slot_models["cnn"]), "--data", str(mixed), "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["images"] == 2 * 15 and report[PARTIAL_FOLDER]["per_image"]["slices"] == 6
    assert "per_slice" not in report[PARTIAL_FOLDER], "no groups file, no per-slice figure"


def test_a_labelled_batch_reports_sensitivity_for_a_tumour_folder():
    from tumor_ai.core.batch import ANY_TUMOUR, folder_label, labelled_report

    labels = ["glioma", "meningioma", "notumor", "pituitary"]
    assert folder_label("br35h.zip/Tumor/y1.jpg", labels) == ANY_TUMOUR
    assert folder_label("set/no_tumour/x.jpg", labels) == "notumor", "no tumour is not a tumour folder"
    rows = [
        {"file": "set.zip/tumour/a.jpg", "cnn class": "Glioma"},
        {"file": "set.zip/tumour/b.jpg", "cnn class": "No tumour"},
        {"file": "set.zip/tumour/c.jpg", "cnn class": "Pituitary tumour"},
        {"file": "set.zip/tumour/d.jpg", "cnn class": "error"},
        {"file": "set.zip/glioma/e.jpg", "cnn class": "Glioma"},
    ]
    report = labelled_report(rows, ["cnn"], labels)
    assert "Labelled by folder: 5 of 5 files" in report
    assert "cnn: 66.7% of 3 readable files in a `tumour` folder" in report and "read as a tumour (2)" in report
    assert "cnn: accuracy 100.0% (1 of 1 readable files)" in report, "the labelled classes keep their accuracy"
    only_tumours = labelled_report(rows[:3], ["cnn"], labels)
    assert "accuracy" not in only_tumours and "read as a tumour (2)" in only_tumours
