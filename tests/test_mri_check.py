"""The not-an-MRI check of the shipped models: held-out MRIs pass, other pictures are refused.

These run the real models in models/ (committed): the MRIs are slices of the group-aware validation
split (tumor_ai/examples/ and tests/data/mri/), which neither shipped model trained on (both are
split runs); the other pictures ship with scikit-image or are drawn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.non_mri import general_pictures, medical_pictures
from tumor_ai.core.imaging import read_image
from tumor_ai.core.mri_check import MriCheck, image_statistics

pytestmark = pytest.mark.slow  # it starts a server, a browser, a Hub or a build, trains, or runs the shipped models

ROOT = Path(__file__).resolve().parent.parent
HELD_OUT = sorted((ROOT / "tumor_ai" / "examples").glob("*.jpg")) + sorted((ROOT / "tests" / "data" / "mri").glob("*.jpg"))


@pytest.fixture(scope="module", params=["cnn", "vgg16"])
def shipped(request):
    from tumor_ai.core.inference import Predictor

    return Predictor.from_source(ROOT / "models" / request.param)


def test_the_card_states_the_check_that_serves(shipped):
    """The bounds the metadata (and so the card) publishes are the ones in the check file that serving loads."""
    assert shipped.mri_check is not None
    assert shipped.metadata.mri_check.bounds == shipped.mri_check.bounds()
    trained_on_other = (shipped.metadata.training.arguments or {}).get("partial")
    other = 1 if trained_on_other and "include the" in shipped.metadata.mri_check.method else 0
    assert len(shipped.mri_check.means) == len(shipped.labels) + other, "one feature mean per class (and the other collection)"
    assert shipped.mri_check.means.shape[1] == shipped.model.get_layer(shipped.metadata.embedding_layer).output.shape[-1]


def test_held_out_mris_pass(shipped):
    predictions = shipped.predict([read_image(path).pixels for path in HELD_OUT])
    passed = [p.is_mri for p in predictions]
    assert len(passed) == 12 and sum(passed) >= 11, dict(zip([p.name for p in HELD_OUT], passed))


def test_non_mri_pictures_are_refused(shipped):
    others = {picture.name: picture.pixels for picture in general_pictures()}
    predictions = shipped.predict(list(others.values()))
    rejected = [name for name, p in zip(others, predictions) if not p.is_mri]
    assert len(others) >= 25
    assert len(rejected) / len(others) >= 0.95, f"passed: {set(others) - set(rejected)}"
    for name in ("skimage:astronaut", "skimage:coffee", "skimage:page", "blank black", "uniform noise", "text screenshot"):
        assert name in rejected


def test_check_round_trips_through_its_file(tmp_path):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(200, 8))
    statistics = np.stack([image_statistics(rng.integers(0, 30, (64, 64, 3), dtype=np.uint8)) for _ in range(200)])
    check = MriCheck.fit(embeddings, statistics)
    check.save(tmp_path)
    loaded = MriCheck.in_folder(tmp_path)
    assert loaded.bounds() == check.bounds()
    far = np.full((1, 8), 50.0)
    assert check.distances(far)[0] > check.distance_threshold


def test_ct_at_every_window_radiographs_and_ultrasound_are_refused(shipped):
    """Pictures a user could export from other scanners, as plain images: none gets a tumour class.

    These are the pictures the check was fitted against; the card reports the rate for a fit that
    never saw a picture's source (out of fold), which is lower for CT and ultrasound.
    """
    pictures = medical_pictures()
    families = {picture.family for picture in pictures}
    assert {"ct", "ultrasound", "radiograph"} <= families and len(pictures) >= 60
    predictions = shipped.predict([picture.pixels for picture in pictures])
    passed = [picture for picture, prediction in zip(pictures, predictions) if prediction.is_mri]
    assert not [picture.name for picture in passed if picture.family != "ultrasound"]
    # the VGG16 passes one grey colour-Doppler clip, the CNN one fan and one linear-probe frame (their cards say so)
    assert len(passed) <= 2, [picture.name for picture in passed]
    windows = {picture.name.split("(")[-1] for picture in pictures if picture.family == "ct"}
    assert len(windows) == 8, windows


def test_the_learned_refusal_is_what_refuses_ct_and_ultrasound(shipped):
    """Without its learned part, the same check lets CT and ultrasound through: the part is load-bearing."""
    from dataclasses import replace

    pictures = [picture for picture in medical_pictures() if picture.family in ("ct", "ultrasound")]
    embeddings = shipped.run(shipped.prepare([picture.pixels for picture in pictures]), test_time_flip=False)["embedding"]
    statistics = np.stack([image_statistics(picture.pixels) for picture in pictures])
    bounds_only = replace(shipped.mri_check, probe={})
    assert bounds_only.passes(statistics, bounds_only.distances(embeddings), embeddings).sum() >= 10
    # the VGG16's check passes one grey colour-Doppler clip, the CNN's two ultrasound frames (their cards say so)
    assert shipped.mri_check.passes(statistics, shipped.mri_check.distances(embeddings), embeddings).sum() <= 2


def test_the_distance_is_to_the_nearest_class_mean():
    rng = np.random.default_rng(1)
    centres = np.array([[6.0, 0.0], [-6.0, 0.0]])
    targets = np.repeat([0, 1], 300)
    embeddings = centres[targets] + rng.normal(size=(600, 2))
    statistics = np.stack([image_statistics(rng.integers(0, 30, (64, 64, 3), dtype=np.uint8)) for _ in range(600)])
    per_class = MriCheck.fit(embeddings, statistics, targets)
    pooled = MriCheck.fit(embeddings, statistics)
    between = np.array([[0.0, 0.0]])  # the pooled mean: no MRI class lies here
    assert per_class.distances(between)[0] > per_class.distance_threshold
    assert pooled.distances(between)[0] < pooled.distance_threshold, "a single mean would let it through"


def synthetic_check(rows: int = 200, seed: int = 0) -> tuple[MriCheck, np.ndarray, np.ndarray]:
    """A check fitted on random features and random statistics rows (no images: fast), with what it was fitted on."""
    from tumor_ai.core.mri_check import STATISTICS

    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(rows, 4))
    statistics = rng.uniform(0.2, 0.8, (rows, len(STATISTICS))).astype(np.float32)
    return MriCheck.fit(embeddings, statistics), embeddings, statistics


def test_each_row_of_the_table_is_a_test_of_its_statistic():
    """Pushing one statistic past its bound, in the table's direction, refuses the image; nothing else does."""
    from tumor_ai.core.mri_check import BOUNDS, DISTANCE, STATISTICS

    check, embeddings, statistics = synthetic_check()
    typical = np.median(statistics, axis=0, keepdims=True)
    centre = check.means[:1]
    assert check.passes_bounds(typical, check.distances(centre))[0]
    assert [bound.key for bound in BOUNDS] == list(check.limits) and len(BOUNDS) == 7
    for bound in BOUNDS:
        statistics_row, features = typical.copy(), centre.copy()
        push = 1.0 if bound.direction == "max" else -1.0
        if bound.statistic == DISTANCE:
            features = features + push * 100.0
        else:
            statistics_row[0, STATISTICS.index(bound.statistic)] = check.limits[bound.key] + push * 0.5
        assert not check.passes_bounds(statistics_row, check.distances(features))[0], bound.key
        assert check.failed_tests(statistics_row, check.distances(features), features) == [[bound.key]]
    assert check.failed_tests(typical, check.distances(centre), centre) == [[]]


def test_the_file_the_metadata_and_the_card_name_the_tables_bounds(tmp_path, monkeypatch):
    """A different table (one bound dropped, one added) changes the saved keys, the check and the card together."""
    from tumor_ai.core import mri_check
    from tumor_ai.publish.card import mri_check_section

    table = (*mri_check.BOUNDS[:-1], mri_check.Bound("head fraction", "min", None, "share of the frame the head fills"))
    monkeypatch.setattr(mri_check, "BOUNDS", table)
    check, embeddings, statistics = synthetic_check()
    check.save(tmp_path)
    with np.load(tmp_path / mri_check.CHECK_FILE) as stored:
        assert set(stored.files) == {"format_version", "means", "precision", *(bound.key for bound in table)}
    assert "min_head_fraction" in check.bounds() and "max_flat_head" not in check.bounds()
    assert MriCheck.in_folder(tmp_path).bounds() == check.bounds()
    small_head = np.median(statistics, axis=0, keepdims=True)
    small_head[0, mri_check.STATISTICS.index("head fraction")] = 0.0
    assert not check.passes_bounds(small_head, check.distances(check.means[:1]))[0]
    report = gate_report(check, 1.0)
    report.method = mri_check.bounds_text(mri_check.Tails())
    card = "\n".join(mri_check_section(report))
    for bound in table:
        assert card.count(bound.words) == 2, bound.words  # the method sentence and the table of bounds
        assert f"| {bound.words} | {bound.side} {check.bounds()[bound.key]:g} |" in card
    assert "flat share" not in card


def test_a_check_without_a_format_version_is_version_one(tmp_path):
    """Files from before the version (the VGG16's) load, and a version-less copy of a new file reads the same."""
    from tumor_ai.core.mri_check import CHECK_FILE

    for name in ("cnn", "vgg16"):
        assert MriCheck.in_folder(ROOT / "models" / name).limits
    check, embeddings, statistics = synthetic_check()
    check.save(tmp_path)
    with np.load(tmp_path / CHECK_FILE) as stored:
        arrays = {key: stored[key] for key in stored.files if key != "format_version"}
    np.savez(tmp_path / CHECK_FILE, **arrays)
    loaded = MriCheck.in_folder(tmp_path)
    assert loaded.bounds() == check.bounds()
    np.testing.assert_array_equal(loaded.passes_bounds(statistics, loaded.distances(embeddings)),
                                  check.passes_bounds(statistics, check.distances(embeddings)))  # fmt: skip


def test_a_check_newer_than_the_code_is_refused_in_one_sentence(tmp_path):
    from tumor_ai.core.mri_check import CHECK_FILE, FORMAT_VERSION
    from tumor_ai.model.metadata import ModelSourceError

    check, _, _ = synthetic_check()
    check.save(tmp_path)
    with np.load(tmp_path / CHECK_FILE) as stored:
        arrays = {key: stored[key] for key in stored.files}
    np.savez(tmp_path / CHECK_FILE, **(arrays | {"format_version": np.array(FORMAT_VERSION + 1)}))
    with pytest.raises(ModelSourceError, match=f"version {FORMAT_VERSION + 1} check, newer than this tumor-ai reads") as caught:
        MriCheck.in_folder(tmp_path)
    assert str(caught.value).count(". ") == 0 and str(caught.value).endswith(".")


def test_serving_names_a_newer_check_rather_than_calling_it_damaged(tmp_path):
    import shutil

    from tumor_ai.core.inference import Predictor
    from tumor_ai.core.mri_check import CHECK_FILE, FORMAT_VERSION
    from tumor_ai.model.metadata import ModelSourceError

    folder = tmp_path / "cnn"
    shutil.copytree(ROOT / "models" / "cnn", folder)
    with np.load(folder / CHECK_FILE) as stored:
        arrays = {key: stored[key] for key in stored.files}
    np.savez(folder / CHECK_FILE, **(arrays | {"format_version": np.array(FORMAT_VERSION + 1)}))
    with pytest.raises(ModelSourceError, match="newer than this tumor-ai reads"):
        Predictor.from_source(folder, warm_up=False)


def gate_folder(tmp_path: Path) -> Path:
    """A model folder with the shipped CNN's metadata (no weights: the gate test never loads the model)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "tumor_ai.json").write_bytes((ROOT / "models" / "cnn" / "tumor_ai.json").read_bytes())
    return folder


def gate_report(check: MriCheck, pass_rate: float):
    from tumor_ai.model.metadata import MriCheckRecord

    return MriCheckRecord(
        method="synthetic", bounds=check.bounds(), validation_pass_rate=pass_rate, validation_images=200,
        non_mri_images=1, non_mri_rejection_rate=1.0, medical_non_mri_images=1, medical_non_mri_rejection_rate=1.0,
    )  # fmt: skip


def test_a_failed_gate_writes_nothing(tmp_path, monkeypatch):
    from training import fit_mri_check

    folder = gate_folder(tmp_path)
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    check, _, _ = synthetic_check()
    monkeypatch.setattr(fit_mri_check, "measure_check", lambda *args: (check, gate_report(check, 0.9)))
    with pytest.raises(SystemExit, match="nothing was written"):
        fit_mri_check.fit_mri_check(str(folder), "unused")
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


def test_a_passed_gate_writes_the_check_its_metadata_and_the_card(tmp_path, monkeypatch):
    from training import fit_mri_check
    from tumor_ai.model.metadata import ModelMetadata

    folder = gate_folder(tmp_path)
    check, _, _ = synthetic_check()
    report = gate_report(check, 1.0)
    monkeypatch.setattr(fit_mri_check, "measure_check", lambda *args: (check, report))
    fit_mri_check.fit_mri_check(str(folder), "unused")
    assert MriCheck.in_folder(folder).bounds() == check.bounds()
    assert ModelMetadata.read(folder / "tumor_ai.json").mri_check == report
    assert "| colour saturation | at most" in (folder / "README.md").read_text()


def test_the_feature_cache_is_keyed_by_the_pixels_and_the_model(tmp_path, monkeypatch):
    """Same images hit; other images of the same count and shape, or another model file, miss."""
    from types import SimpleNamespace

    from training import fit_mri_check

    (tmp_path / "model.keras").write_bytes(b"weights one")
    predictor = SimpleNamespace(
        name="tiny", folder=tmp_path, metadata=SimpleNamespace(preprocessing="scale_0_1", embedding_layer="avg_pool")
    )
    runs = []
    monkeypatch.setattr(fit_mri_check, "embeddings_of", lambda p, inputs, desc="": runs.append(1) or inputs.mean(axis=(1, 2)))
    rng = np.random.default_rng(0)
    first, second = (rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8) for _ in range(2))
    cache = tmp_path / "cache"
    np.testing.assert_array_equal(fit_mri_check.cached_embeddings(predictor, first, cache), first.mean(axis=(1, 2)))
    fit_mri_check.cached_embeddings(predictor, first.copy(), cache)
    assert len(runs) == 1, "the same pixels hit the cache"
    np.testing.assert_array_equal(fit_mri_check.cached_embeddings(predictor, second, cache), second.mean(axis=(1, 2)))
    assert len(runs) == 2, "other pixels of the same count miss it"
    (tmp_path / "model.keras").write_bytes(b"weights two")
    fit_mri_check.cached_embeddings(predictor, first, cache)
    assert len(runs) == 3, "another model misses it"


def test_the_check_of_a_model_trained_on_another_collection_needs_its_slices(tmp_path):
    """The shipped CNN trained on Br35H's slices: fitting its check without them stops, and says how to give them."""
    from training.fit_mri_check import partial_folder

    folder = gate_folder(tmp_path)  # the CNN's metadata records ../shared/data/br35h, absent from this temporary folder
    recorded = json.loads((folder / "tumor_ai.json").read_text())["training"]["arguments"]["partial"]
    assert recorded
    missing = str(tmp_path / "no-such-folder")
    with pytest.raises(SystemExit, match="pass --partial DIR"):
        partial_folder(folder, missing)
    given = tmp_path / "br35h"
    given.mkdir()
    assert partial_folder(folder, str(given)) == str(given)
